/*
 * QEMU TCG plugin: count guest instructions between two marker syscalls, and in the whole run.
 *
 * Whole-process counts of a Python program are billions of instructions with ~0.5% run-to-run spread,
 * far more than one model invoke, so the guest brackets each invoke with an otherwise unused syscall
 * number (EDGEKD_MARK_SYSCALL; the kernel answers ENOSYS) and this plugin writes the number of
 * instructions executed between the "start" (a1 = 1) and "stop" (a1 = 2) marks, one line per window,
 * to the file named by the plugin argument out=PATH, then "total N" for the whole run at exit. Bare-metal
 * guests (qemu-system-arm) make no syscalls: edgekd takes the difference of two runs' totals instead.
 *
 * Counting is an inline add per translated block (QEMU_PLUGIN_INLINE_ADD_U64 of the block's length), the
 * same method as QEMU's tests/plugin/insn.c with inline=on. It is exact for single-threaded guests; run the
 * model with one thread while counting. The file, marker and exit handling are insn_common.h's.
 */
#include "insn_common.h"

static uint64_t window_begin;

static void window_start(void)
{
    window_begin = executed;
}

static void window_stop(uint64_t id)
{
    fprintf(out, "%llu %llu\n", (unsigned long long)id, (unsigned long long)(executed - window_begin));
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    return plugin_setup(id, "insn_window", argc, argv, on_translate);
}
