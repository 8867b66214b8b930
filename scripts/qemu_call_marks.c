/*
 * QEMU TCG plugin for scripts/bench_kernels.py: per-layer instruction counts of a bare-metal invoke.
 *
 * edgekd's generated edgekd_invoke() is a straight list of kernel calls, so every translated block inside it
 * (address range lo..hi, plugin arguments lo= and hi=) runs once between two kernel calls. At each such block
 * this plugin notes the running instruction count; the differences of consecutive notes are the kernels' own
 * counts (plus the few instructions of the call sequence). Counting is an inline add per translated block, as
 * in edgekd/emulate/native/insn_window.c; the notes go to out=PATH, one per line, at exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAX_MARKS 4096

static uint64_t executed, lo, hi, marks[MAX_MARKS];
static int n_marks;
static FILE *out;

static void on_mark(unsigned int vcpu, void *udata)
{
    (void)vcpu; (void)udata;
    if (n_marks < MAX_MARKS) {
        marks[n_marks++] = executed;
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    (void)id;
    if (pc >= lo && pc < hi) {
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, qemu_plugin_tb_n_insns(tb));
}

static void on_plugin_exit(qemu_plugin_id_t id, void *udata)
{
    (void)id; (void)udata;
    for (int i = 0; i < n_marks; i++) {
        fprintf(out, "%llu\n", (unsigned long long)marks[i]);
    }
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "w");
        } else if (strncmp(argv[i], "lo=", 3) == 0) {
            lo = strtoull(argv[i] + 3, NULL, 0);
        } else if (strncmp(argv[i], "hi=", 3) == 0) {
            hi = strtoull(argv[i] + 3, NULL, 0);
        }
    }
    if (out == NULL || hi <= lo) {
        fprintf(stderr, "qemu_call_marks: give out=PATH lo=ADDR hi=ADDR\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
