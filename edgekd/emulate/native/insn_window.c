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
 * model with one thread while counting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

#define EDGEKD_MARK_SYSCALL 0xED6E

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t executed;
static uint64_t window_start;
static FILE *out;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != EDGEKD_MARK_SYSCALL) {
        return;
    }
    if (a1 == 1) {
        window_start = executed;
    } else if (a1 == 2 && out != NULL) {
        fprintf(out, "%llu %llu\n", (unsigned long long)a2, (unsigned long long)(executed - window_start));
        fflush(out);
    }
}

static void on_plugin_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id; (void)udata;
    if (out != NULL) {
        fprintf(out, "total %llu\n", (unsigned long long)executed);
        fclose(out);
        out = NULL;
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "w");
        }
    }
    if (out == NULL) {
        fprintf(stderr, "insn_window: give out=PATH (a writable file)\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
