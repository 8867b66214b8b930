/*
 * QEMU TCG plugin: per translated block, how often it ran and how often control left it other than by falling
 * through (a taken branch), for the Cortex-M55 cycle model (edgekd/emulate/timing_m55.py).
 *
 * QEMU 7.2's plugin API gives no instruction class for Thumb guests, so this plugin records only where each
 * block starts, how many instructions it holds and where it ends; edgekd disassembles the firmware ELF
 * (arm-none-eabi-objdump) and charges each block's instructions from its timing table. At exit it writes one
 * line per translation that ran, "tb START N END COUNT TAKEN" (hex addresses; END is the address after the last
 * instruction, so a next block starting elsewhere means a taken branch), then insn_common.h's "total N".
 * A block can be translated more than once (the same START): edgekd sums the lines.
 *
 * Counting is a callback per executed block (not an inline add), since the taken-branch test needs the
 * previous block; bare-metal invokes of a few million instructions cost well under a second more.
 *
 * Per kernel call (optional arguments lo=ADDR hi=ADDR, the address range of edgekd_invoke, a straight list of
 * kernel calls): every executed block starting in that range is a mark, and at each mark the plugin writes what
 * ran since the previous mark, "cb PHASE START N END COUNT TAKEN" (phase 0: before the first mark; the last
 * phase, after the last mark, is written at exit). The taken exit that enters a mark block is counted before the
 * mark, so a kernel's return refill stays with its call. The phases add up to the "tb" lines exactly.
 */
#include "insn_common.h"

struct tb_rec {
    uint64_t start, end, count, taken, seen_count, seen_taken;
    size_t n;
    int mark;
    struct tb_rec *next;
};

static struct tb_rec *records, *last;
static uint64_t mark_lo, mark_hi, phase;

/* Writes each block's counts since the previous mark as phase `phase`, then starts the next phase. */
static void flush_phase(void)
{
    if (out == NULL) {
        return;
    }
    for (struct tb_rec *r = records; r != NULL; r = r->next) {
        if (r->count != r->seen_count || r->taken != r->seen_taken) {
            fprintf(out, "cb %llu %llx %zu %llx %llu %llu\n", (unsigned long long)phase,
                    (unsigned long long)r->start, r->n, (unsigned long long)r->end,
                    (unsigned long long)(r->count - r->seen_count), (unsigned long long)(r->taken - r->seen_taken));
            r->seen_count = r->count;
            r->seen_taken = r->taken;
        }
    }
    phase++;
}

static void window_start(void)
{
}

static void window_stop(uint64_t id)
{
    (void)id;
}

static void on_exec(unsigned int vcpu, void *udata)
{
    struct tb_rec *rec = udata;
    (void)vcpu;
    if (last != NULL && last->end != rec->start) {
        last->taken++;
    }
    if (rec->mark) {
        flush_phase();
    }
    rec->count++;
    executed += rec->n;
    last = rec;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct tb_rec *rec;
    struct qemu_plugin_insn *tail;
    (void)id;
    if (n == 0) {
        return;
    }
    rec = calloc(1, sizeof(*rec));
    if (rec == NULL) {
        return;
    }
    tail = qemu_plugin_tb_get_insn(tb, n - 1);
    rec->start = qemu_plugin_tb_vaddr(tb);
    rec->end = qemu_plugin_insn_vaddr(tail) + qemu_plugin_insn_size(tail);
    rec->n = n;
    rec->mark = mark_hi > mark_lo && rec->start >= mark_lo && rec->start < mark_hi;
    rec->next = records;
    records = rec;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, rec);
}

static void on_profile_exit(qemu_plugin_id_t id, void *udata)
{
    if (out != NULL && mark_hi > mark_lo) {
        flush_phase();
    }
    if (out != NULL) {
        for (struct tb_rec *r = records; r != NULL; r = r->next) {
            if (r->count) {
                fprintf(out, "tb %llx %zu %llx %llu %llu\n", (unsigned long long)r->start, r->n,
                        (unsigned long long)r->end, (unsigned long long)r->count, (unsigned long long)r->taken);
            }
        }
    }
    on_plugin_exit(id, udata);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    int rc;
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "lo=", 3) == 0) {
            mark_lo = strtoull(argv[i] + 3, NULL, 0);
        } else if (strncmp(argv[i], "hi=", 3) == 0) {
            mark_hi = strtoull(argv[i] + 3, NULL, 0);
        }
    }
    rc = plugin_setup(id, "tb_profile", argc, argv, on_translate);
    if (rc == 0) {
        qemu_plugin_register_atexit_cb(id, on_profile_exit, NULL);  /* replaces insn_common.h's exit callback */
    }
    return rc;
}
