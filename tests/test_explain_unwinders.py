"""What marks hardirq, softirq (+vector) and process context in each architecture's
printed trace (paftrace/explain/context_read.py cites the unwinders), on minimal
traces in each format (paftrace/explain/frames.py)."""

from __future__ import annotations

import pytest

from paftrace.explain.analyze import explain_text
from paftrace.explain.frames import tokens

HEADER = "x: page allocation failure: order:2, mode:0xa20(GFP_ATOMIC), nodemask=(null)\n"

TRACES = {
    # arm64 v5.x: el1_irq entry, gic_handle_irq handler, softirq on irq_exit
    "arm64-softirq": ("Call trace:\n dump_backtrace+0x0/0x1a0\n warn_alloc+0xe8/0x150\n"
                      " __alloc_pages_nodemask+0x1a0/0x2c0\n page_frag_alloc+0x58/0x160\n"
                      " __napi_alloc_skb+0xbc/0x130\n stmmac_rx+0x2a0/0x7c0 [stmmac]\n"
                      " stmmac_napi_poll_rx+0x40/0xb0 [stmmac]\n net_rx_action+0x148/0x3a0\n"
                      " __do_softirq+0x120/0x3a0\n irq_exit+0xc4/0xe0\n"
                      " __handle_domain_irq+0x70/0xc0\n gic_handle_irq+0x54/0x90\n"
                      " el1_irq+0xb8/0x180\n arch_cpu_idle+0x18/0x28\n",
                      "softirq", "NET_RX"),
    # arm64 v5.13+: el1h_64_irq entry; a driver's hard handler
    "arm64-hardirq": ("Call trace:\n dump_backtrace+0x0/0x1a0\n warn_alloc+0xe8/0x150\n"
                      " __alloc_pages+0x1a0/0x2c0\n foo_isr+0x40/0x90 [foo]\n"
                      " __handle_irq_event_percpu+0x60/0x180\n handle_irq_event+0x50/0xf0\n"
                      " handle_fasteoi_irq+0xb4/0x170\n generic_handle_domain_irq+0x2c/0x44\n"
                      " gic_handle_irq+0x50/0x130\n call_on_irq_stack+0x2c/0x54\n"
                      " do_interrupt_handler+0x80/0x84\n el1_interrupt+0x34/0x70\n"
                      " el1h_64_irq_handler+0x18/0x24\n el1h_64_irq+0x64/0x68\n",
                      "hardirq", None),
    # arm64: a stale el1_irq with no handler inside it, in a syscall
    "arm64-stale-entry": ("Call trace:\n warn_alloc+0xe8/0x150\n __alloc_pages+0x1a0/0x2c0\n"
                          " el1_irq+0xb8/0x180\n foo_ioctl+0x40/0x90 [foo]\n"
                          " __arm64_sys_ioctl+0xa8/0xf0\n invoke_syscall+0x48/0x114\n"
                          " el0_svc+0x28/0x80\n", "process", None),
    # arm (old): "X from Y", the last caller taken from the final "from"
    "arm-hardirq": ("[<c0013e38>] (warn_alloc_failed+0xdc/0x124) from [<c009e194>] "
                    "(__alloc_pages_nodemask+0x178/0x860)\n"
                    "[<c009e194>] (__alloc_pages_nodemask+0x178/0x860) from [<bf17c574>] "
                    "(foo_interrupt+0xac/0x1bc [foo])\n"
                    "[<bf17c574>] (foo_interrupt+0xac/0x1bc [foo]) from [<c0062fd8>] "
                    "(handle_irq_event_percpu+0x50/0x1f8)\n", "hardirq", None),
    # powerpc ELFv2: decrementer interrupt ("--- interrupt: 900") with the timer handler
    "ppc-timer": ("Call Trace:\n[c00000000fff3840] [c000000000012b14] dump_stack+0xb0/0xf4 "
                  "(unreliable)\n[c00000000fff38f0] [c00000000016a0b4] warn_alloc+0x13c/0x1e0\n"
                  "[c00000000fff3a80] [c0000000001b0d18] __alloc_pages+0x338/0x3c0\n"
                  "[c00000000fff3b10] [c0000000001b1f30] hrtimer_run_queues+0x210/0x2f0\n"
                  "[c00000000fff3be0] [c0000000001b2b28] timer_interrupt+0x1f8/0x290\n"
                  "[c00000000fff3c80] [c0000000004a2cd4] decrementer_common_virt+0x1a4/0x1b0\n"
                  "--- interrupt: 900 at arch_local_irq_restore+0x1d8/0x200\n",
                  "hardirq", None),
    # powerpc: an external interrupt frame line alone, no handler inside: not read as irq
    "ppc-stale-trap": ("Call Trace:\n[c00000001e8a38c0] [c0000000004b8a3c] warn_alloc+0x13c/0x1e0\n"
                       "[c00000001e8a3980] [c0000000004b9a90] __alloc_pages+0xf20/0x1000\n"
                       "--- interrupt: 500 at foo+0x1/0x2\n"
                       "[c00000001e8a3b50] [c0000000004b9ea8] foo_write+0x338/0x3c0\n"
                       "[c00000001e8a3e10] [c00000000000c64c] system_call_common+0xec/0x250\n",
                       "process", None),
    # s390 (v5.2+): parenthesised frames are unreliable and ignored
    "s390-process": ("Call Trace:\n([<000000000011336e>] do_IRQ+0x8e/0xd0)\n"
                     " [<0000000000a81c6a>] warn_alloc+0xf4/0x198 \n"
                     " [<00000000002c2a62>] __alloc_pages_nodemask+0x2e6/0x338 \n"
                     " [<000003ff8034a2f2>] dasd_ioctl+0x52/0x220 [dasd_mod] \n"
                     " [<0000000000a9a0a8>] __do_syscall+0x1c0/0x1e8 \n", "process", None),
    # mips: ret_from_irq is an entry; plat_irq_dispatch the handler
    "mips-hardirq": ("Call Trace:\n[<800710f4>] show_stack+0x50/0x84\n"
                     "[<800cd6c4>] warn_alloc+0xe8/0x10c\n"
                     "[<800cf5b8>] __alloc_pages_nodemask+0x51c/0x68c\n"
                     "[<83130090>] foo_irq_handler+0x30/0x98 [foo]\n"
                     "[<80061234>] handle_irq_event_percpu+0x5c/0x1c0\n"
                     "[<8024a0f0>] plat_irq_dispatch+0xd0/0x110\n"
                     "[<80060830>] ret_from_irq+0x0/0x4\n", "hardirq", None),
    "mips-stale-entry": ("Call Trace:\n[<800710f4>] show_stack+0x50/0x84\n"
                         "[<800cd6c4>] warn_alloc+0xe8/0x10c\n"
                         "[<80060830>] ret_from_irq+0x0/0x4\n"
                         "[<80123456>] foo_read+0x30/0x98\n"
                         "[<80061234>] handle_sys+0x11c/0x140\n", "process", None),
    # x86 v5.8+: asm_sysvec entry with the sysvec handler inside, in <IRQ>
    "x86-timer": ("Call Trace:\n <IRQ>\n dump_stack_lvl+0x45/0x5b\n warn_alloc+0x11c/0x1a0\n"
                  " __alloc_pages+0x2d4/0x370\n foo_timer_fn+0x22/0x50 [foo]\n"
                  " call_timer_fn+0x27/0x130\n __run_timers+0x1e3/0x280\n"
                  " run_timer_softirq+0x19/0x40\n __do_softirq+0xd0/0x2c4\n"
                  " __irq_exit_rcu+0xa9/0xd0\n sysvec_apic_timer_interrupt+0x72/0x90\n"
                  " </IRQ>\n <TASK>\n asm_sysvec_apic_timer_interrupt+0x12/0x20\n",
                  "softirq", "TIMER"),
    "x86-stale-sysvec": ("Call Trace:\n <TASK>\n dump_stack_lvl+0x45/0x5b\n"
                         " warn_alloc+0x11c/0x1a0\n __alloc_pages+0x2d4/0x370\n"
                         " asm_sysvec_apic_timer_interrupt+0x12/0x20\n"
                         " foo_ioctl+0x1/0x2 [foo]\n do_syscall_64+0x5c/0x90\n </TASK>\n",
                         "process", None),
    # threaded handler: the driver's handler called by irq_thread_fn is process context
    "threaded": ("Call Trace:\n dump_stack+0x1/0x2\n warn_alloc+0x1/0x2\n"
                 " __alloc_pages+0x1/0x2\n foo_interrupt+0x1/0x2 [foo]\n"
                 " irq_thread_fn+0x1/0x2\n irq_thread+0x1/0x2\n kthread+0x1/0x2\n",
                 "process", None),
}


@pytest.mark.parametrize("name", sorted(TRACES))
def test_context_marks_of_each_architecture(name: str) -> None:
    trace, context, vector = TRACES[name]
    [e] = explain_text(HEADER + trace)
    assert (e.reading.context, e.reading.softirq) == (context, vector), e.reading.evidence


@pytest.mark.parametrize("line, name, module, reliable", [
    (" [<ffffffff8112c207>] ? __alloc_pages_nodemask+0x757/0x8d0 [mod]",
     "__alloc_pages_nodemask", "mod", False),
    ("[<ffffffff884a9aa0>] :ip_conntrack:alloc_hashtable+0x33/0x7a", "alloc_hashtable",
     "ip_conntrack", True),
    ("[c0000000e2a63b20] [c0000000000b09c4] .irq_exit+0xb4/0xc0", "irq_exit", None, True),
    ("[c00000000fff3840] [c000000000012b14] .show_stack+0x74/0x1c0 (unreliable)", "show_stack",
     None, False),
    ("([<000000000011336e>] show_stack+0x8e/0xd0)", "show_stack", None, False),
    (" warn_alloc from __alloc_pages+0xef8/0x1044", "warn_alloc", None, True),
    (" nvme_validate_ns (drivers/nvme/host/core.c:3724) nvme_core", "nvme_validate_ns",
     "nvme_core", True),
    (" dump_stack_lvl+0x45/0x5b [foo 0123456789abcdef0123456789abcdef01234567]",
     "dump_stack_lvl", "foo", True),
])
def test_frame_line_of_each_format(line: str, name: str, module: str | None,
                                   reliable: bool) -> None:
    [token] = tokens(line)
    assert (token.kind, token.name, token.module, token.reliable) == \
        ("frame", name, module, reliable)


@pytest.mark.parametrize("line", ["[<c0011e48>] [<c03b1630>]",
                                  "Function entered at [<c0011e48>] from [<c03b1630>]",
                                  "[c00000000fff3840] [c000000000012b14] 0xc000000000012b14",
                                  "[<8325d5f0>] 0x8325d5f0"])
def test_address_only_lines_are_counted_not_guessed(line: str) -> None:
    assert [t.kind for t in tokens(line)] == ["address"]
