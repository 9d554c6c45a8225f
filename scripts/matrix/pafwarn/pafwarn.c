// SPDX-License-Identifier: GPL-2.0
/*
 * pafwarn: make the kernel itself print "page allocation failure" once, safely.
 *
 * Used only inside the kernel-matrix test guests. It asks ZONE_DMA (16 MiB on
 * x86-64) for order-10 blocks with GFP_KERNEL | GFP_DMA | __GFP_NORETRY and no
 * __GFP_NOWARN, until one fails: the zone holds at most four such blocks, so this
 * ends after a handful of attempts without pressuring the rest of memory, and
 * __GFP_NORETRY keeps the OOM killer out. The failure goes through the slow
 * path to warn_alloc(). Everything is freed before init returns.
 */
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/module.h>

static int order = 10;
module_param(order, int, 0444);
MODULE_PARM_DESC(order, "allocation order (default 10)");

static int max_blocks = 16;
module_param(max_blocks, int, 0444);
MODULE_PARM_DESC(max_blocks, "give up after this many successful allocations");

static int __init pafwarn_init(void)
{
	struct page *pages[64];
	int held = 0, failed_at = -1, i;

	if (max_blocks > (int)ARRAY_SIZE(pages))
		max_blocks = ARRAY_SIZE(pages);
	for (i = 0; i <= max_blocks; i++) {
		struct page *page = alloc_pages(GFP_KERNEL | GFP_DMA | __GFP_NORETRY, order);

		if (!page) {
			failed_at = i;
			break;
		}
		if (held == max_blocks) {
			__free_pages(page, order);
			break;
		}
		pages[held++] = page;
	}
	while (held)
		__free_pages(pages[--held], order);
	pr_info("pafwarn: order %d: %d allocated before the failure (failed=%d)\n",
		order, failed_at < 0 ? i : failed_at, failed_at >= 0);
	return 0;
}

static void __exit pafwarn_exit(void)
{
}

module_init(pafwarn_init);
module_exit(pafwarn_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("paftrace kernel-matrix: provoke one warned page allocation failure");
