from __future__ import annotations

from paftrace.tracefs import parse_format
from tests.helpers import DATA


def test_mm_page_alloc_fields_618():
    fmt = parse_format((DATA / "formats" / "mm_page_alloc-6.18.format").read_text())
    assert fmt.name == "mm_page_alloc"
    assert [(f.name, f.offset, f.size) for f in fmt.fields[4:]] == [
        ("pfn", 8, 8), ("order", 16, 4), ("gfp_flags", 24, 8), ("migratetype", 32, 4)]
    assert fmt.get("gfp_flags").type == "unsigned long"
    assert fmt.get("migratetype").signed
    assert fmt.print_fmt.startswith('"page=%p pfn=0x%lx')


def test_data_loc_and_array_fields():
    fmt = parse_format((DATA / "formats" / "irq_handler_entry-6.18.format").read_text())
    name = fmt.get("name")
    assert name is not None and name.type == "__data_loc char[]"
    text = "name: x\nformat:\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:1;\n"
    assert parse_format(text).get("comm").size == 16


def test_page_pointer_era_layout():
    # 3.10's layout (include/trace/events/kmem.h, docs/KERNEL-NOTES.md §2.3): page pointer, gfp_t.
    text = ("name: mm_page_alloc\nID: 1\nformat:\n"
            "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:struct page * page;\toffset:8;\tsize:8;\tsigned:0;\n"
            "\tfield:unsigned int order;\toffset:16;\tsize:4;\tsigned:0;\n"
            "\tfield:gfp_t gfp_flags;\toffset:20;\tsize:4;\tsigned:0;\n"
            "\tfield:int migratetype;\toffset:24;\tsize:4;\tsigned:1;\n\n"
            'print fmt: "page=%p pfn=%lu order=%d", REC->page\n')
    fmt = parse_format(text)
    assert fmt.get("pfn") is None
    assert fmt.get("page").type == "struct page *"
    assert fmt.get("gfp_flags").size == 4
