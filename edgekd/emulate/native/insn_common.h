/*
 * What edgekd's counting QEMU TCG plugins share (included by insn_window.c and insn_class.c, one plugin each):
 * the plugin API version, the output file named by the argument out=PATH, the instruction counter every
 * translated block adds its length to, the marker syscall that brackets a window (EDGEKD_MARK_SYSCALL; a1 = 1
 * start, a1 = 2 stop, a2 = window id; bare-metal guests make none) and the "total N" line at exit.
 *
 * A plugin defines window_start() and window_stop(id) (what a window records) and its on_translate callback,
 * then calls plugin_setup() from qemu_plugin_install().
 */
#ifndef EDGEKD_INSN_COMMON_H
#define EDGEKD_INSN_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

#define EDGEKD_MARK_SYSCALL 0xED6E

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t executed;
static FILE *out;

static void window_start(void);
static void window_stop(uint64_t id);

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != EDGEKD_MARK_SYSCALL) {
        return;
    }
    if (a1 == 1) {
        window_start();
    } else if (a1 == 2 && out != NULL) {
        window_stop(a2);
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

/* Opens out=PATH and registers the callbacks; -1 with a message naming the plugin when no file was given. */
static int plugin_setup(qemu_plugin_id_t id, const char *name, int argc, char **argv,
                        void (*on_translate)(qemu_plugin_id_t, struct qemu_plugin_tb *))
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "w");
        }
    }
    if (out == NULL) {
        fprintf(stderr, "%s: give out=PATH (a writable file)\n", name);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}

#endif /* EDGEKD_INSN_COMMON_H */
