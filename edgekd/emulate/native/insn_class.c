/*
 * QEMU TCG plugin (aarch64 guests): count executed instructions by class between two marker syscalls.
 *
 * The same windows as insn_window.c (the guest brackets each invoke with syscall EDGEKD_MARK_SYSCALL, a1 = 1
 * start, a1 = 2 stop, a2 = window id), but instead of one number per window it writes one per instruction
 * class, so edgekd can turn a window into cycles with each class's throughput on the emulated core
 * (edgekd/emulate/timing_a.py) instead of one cycles-per-instruction factor.
 *
 * Classes are decided once per translated instruction from its A64 encoding (Arm ARM, "A64 instruction set
 * encoding": the op0 field, then the Advanced SIMD / FP encoding groups). Each translated block gets one inline
 * add per class present in it, so the cost per executed block is a few adds, as in QEMU's tests/plugin/insn.c.
 * SIMD&FP loads and stores count registers transferred (LDP Q = 2, LD1 of four registers = 4), every other
 * class counts instructions. Counters are shared: count a single-threaded guest.
 *
 * Output (file named by out=PATH): a "classes NAME..." header, one "ID TOTAL C0 C1 ..." line per window, and
 * "total N" at exit (the file, marker and exit handling are insn_common.h's).
 */
#include "insn_common.h"

enum {
    C_ALU, C_MUL, C_BRANCH, C_LD, C_ST, C_VLD, C_VST, C_FMUL_Q, C_FMUL_D, C_FP_Q, C_FP_D, C_IMUL_Q, C_IMUL_D,
    C_IMULL, C_DOT_Q, C_DOT_D, C_VACC_Q, C_VACC_D, C_VINT_Q, C_VINT_D, C_SYS, C_OTHER, N_CLASSES
};

static const char *class_names[N_CLASSES] = {
    "alu", "mul", "branch", "ld", "st", "vld", "vst", "fmul_q", "fmul_d", "fp_q", "fp_d", "imul_q", "imul_d",
    "imull", "dot_q", "dot_d", "vacc_q", "vacc_d", "vint_q", "vint_d", "sys", "other"
};

static uint64_t counts[N_CLASSES];
static uint64_t start_executed;
static uint64_t start_counts[N_CLASSES];

#define BITS(x, hi, lo) (((x) >> (lo)) & ((1u << ((hi) - (lo) + 1)) - 1))

/* Registers moved by a SIMD&FP load/store (the weight of its vld/vst count). */
static unsigned simd_mem_regs(uint32_t i)
{
    if (BITS(i, 31, 31) == 0 && BITS(i, 29, 24) == 0x0C && BITS(i, 21, 21) == 0) {  /* multiple structures */
        switch (BITS(i, 15, 12)) {
        case 0x0: case 0x2: return 4;
        case 0x4: case 0x6: return 3;
        case 0x8: case 0xA: return 2;
        default: return 1;
        }
    }
    if (BITS(i, 31, 31) == 0 && BITS(i, 29, 24) == 0x0D) {  /* single structure / replicate */
        return ((BITS(i, 13, 13) << 1) | BITS(i, 21, 21)) + 1;
    }
    if (BITS(i, 29, 27) == 0x5) {  /* load/store pair */
        return 2;
    }
    return 1;
}

static int is_load(uint32_t i)
{
    unsigned op1 = BITS(i, 29, 28);
    if (op1 == 0x1 && BITS(i, 24, 24) == 0) {
        return 1;  /* load literal */
    }
    if (op1 == 0x3 && BITS(i, 26, 26) == 0) {  /* GPR register forms: opc 01 load, 1x sign-extending load */
        return BITS(i, 23, 22) != 0 || (BITS(i, 24, 24) == 0 && BITS(i, 21, 21) && BITS(i, 11, 10) == 0);
    }
    return BITS(i, 22, 22);  /* L: pairs, exclusives, structures, SIMD&FP register forms */
}

static int vec(uint32_t i, int q_class, int d_class)
{
    return BITS(i, 30, 30) ? q_class : d_class;
}

/* Vector x indexed element, by U:opcode<15:12> (Q-form class; the D-form class follows it in the enum). */
static const int BY_ELEMENT[32] = {
    C_FMUL_Q, C_FMUL_Q, C_IMULL, C_IMULL, C_FMUL_Q, C_FMUL_Q, C_IMULL, C_IMULL,  /* U=0: FMLAL FMLA SMLAL .. */
    C_IMUL_Q, C_FMUL_Q, C_IMULL, C_IMULL, C_IMUL_Q, C_IMUL_Q, C_DOT_Q, C_DOT_Q,  /* MUL FMUL SMULL .. SDOT */
    C_IMUL_Q, C_FMUL_Q, C_IMULL, C_FMUL_Q, C_IMUL_Q, C_FMUL_Q, C_IMULL, C_FMUL_Q,  /* U=1: MLA FCMLA UMLAL .. */
    C_FMUL_Q, C_FMUL_Q, C_IMULL, C_VINT_Q, C_FMUL_Q, C_IMUL_Q, C_DOT_Q, C_IMUL_Q,  /* FMLAL2 FMULX UMULL .. UDOT */
};

/* Advanced SIMD vector (bits 28:25 = 0111, bit 31 = 0). */
static int simd_vector(uint32_t i)
{
    unsigned u = BITS(i, 29, 29);
    if (BITS(i, 24, 24)) {
        if (BITS(i, 10, 10) == 0) {  /* vector x indexed element: by U:opcode */
            int c = BY_ELEMENT[(u << 4) | BITS(i, 15, 12)];
            return c == C_IMULL ? c : vec(i, c, c + 1);
        }
        if (BITS(i, 22, 19) != 0) {  /* shift by immediate */
            unsigned op = BITS(i, 15, 11);
            if (op == 0x02 || op == 0x06) {
                return vec(i, C_VACC_Q, C_VACC_D);
            }
            if (op == 0x1C || op == 0x1F) {
                return vec(i, C_FP_Q, C_FP_D);
            }
        }
        return vec(i, C_VINT_Q, C_VINT_D);  /* shifts, modified immediate (MOVI) */
    }
    if (BITS(i, 21, 21)) {
        if (BITS(i, 10, 10)) {  /* three same */
            unsigned op = BITS(i, 15, 11);
            if (op == 0x12 || op == 0x13 || op == 0x16) {
                return vec(i, C_IMUL_Q, C_IMUL_D);
            }
            if (op == 0x0F) {
                return vec(i, C_VACC_Q, C_VACC_D);
            }
            if (op == 0x19 || op == 0x1B) {
                return vec(i, C_FMUL_Q, C_FMUL_D);
            }
            if (op >= 0x18) {
                return vec(i, C_FP_Q, C_FP_D);
            }
            return vec(i, C_VINT_Q, C_VINT_D);
        }
        if (BITS(i, 11, 10) == 0) {  /* three different */
            unsigned op = BITS(i, 15, 12);
            if (op >= 0x8 && op != 0xF) {
                return C_IMULL;
            }
            if (op == 0x5) {
                return C_VACC_Q;
            }
            return C_VINT_Q;  /* widening add/sub: a 128-bit result */
        }
        if (BITS(i, 20, 17) == 0x0) {  /* two-register miscellaneous */
            unsigned op = BITS(i, 16, 12);
            if (op == 0x06) {
                return vec(i, C_VACC_Q, C_VACC_D);
            }
            if (op >= 0x16 || (op >= 0x0C && op <= 0x0F && BITS(i, 23, 23))) {
                return vec(i, C_FP_Q, C_FP_D);
            }
            return vec(i, C_VINT_Q, C_VINT_D);
        }
        if (BITS(i, 20, 17) == 0x8 && u && (BITS(i, 16, 12) == 0x0C || BITS(i, 16, 12) == 0x0F)) {
            return vec(i, C_FP_Q, C_FP_D);  /* FMAXV and friends */
        }
        return vec(i, C_VINT_Q, C_VINT_D);  /* across lanes */
    }
    if (BITS(i, 15, 15) && BITS(i, 10, 10)) {  /* three same extra */
        unsigned op = BITS(i, 14, 11);
        if (op == 0x2 || op == 0x3 || op == 0x4 || op == 0x5) {
            return vec(i, C_DOT_Q, C_DOT_D);
        }
        if (op <= 0x1) {
            return vec(i, C_IMUL_Q, C_IMUL_D);
        }
        return vec(i, C_FMUL_Q, C_FMUL_D);
    }
    if (BITS(i, 22, 21) == 0x2 && BITS(i, 10, 10) && BITS(i, 15, 14) == 0) {  /* FP16 three same */
        unsigned op = BITS(i, 13, 11);
        return (op == 0x1 || op == 0x3) ? vec(i, C_FMUL_Q, C_FMUL_D) : vec(i, C_FP_Q, C_FP_D);
    }
    return vec(i, C_VINT_Q, C_VINT_D);  /* copy (DUP/INS/UMOV), permute, extract, table lookup */
}

/* Scalar FP and Advanced SIMD scalar (bits 28:25 = 1111). */
static int simd_scalar(uint32_t i)
{
    if (BITS(i, 30, 30) == 0 && BITS(i, 31, 31) == 0) {
        if (BITS(i, 24, 24)) {
            return C_FMUL_D;  /* FMADD, FMSUB, FNMADD, FNMSUB */
        }
        if (BITS(i, 21, 21) && BITS(i, 11, 10) == 0x2) {  /* FP data-processing (2 source) */
            unsigned op = BITS(i, 15, 12);
            return (op == 0x0 || op == 0x8) ? C_FMUL_D : C_FP_D;
        }
        return C_FP_D;  /* 1 source, compare, select, immediate, FP <-> integer conversion */
    }
    if (BITS(i, 24, 24) && BITS(i, 10, 10) == 0) {  /* scalar x indexed element */
        unsigned op = BITS(i, 15, 12);
        if (op == 0x1 || op == 0x5 || op == 0x9) {
            return C_FMUL_D;
        }
        return (op == 0x3 || op == 0x7 || op == 0xB) ? C_IMULL : C_IMUL_D;
    }
    if (BITS(i, 21, 21) && BITS(i, 10, 10)) {  /* scalar three same */
        unsigned op = BITS(i, 15, 11);
        if (op == 0x16) {
            return C_IMUL_D;
        }
        if (op == 0x1B) {
            return C_FMUL_D;
        }
        return op >= 0x18 ? C_FP_D : C_VINT_D;
    }
    if (BITS(i, 21, 21) && BITS(i, 11, 10) == 0x2 && BITS(i, 20, 17) == 0x0 && BITS(i, 16, 12) >= 0x16) {
        return C_FP_D;  /* scalar FP conversions, estimates */
    }
    return C_VINT_D;
}

static int classify(uint32_t i)
{
    unsigned op0 = BITS(i, 28, 25);
    switch (op0) {
    case 0x8: case 0x9:
        return C_ALU;  /* data processing, immediate */
    case 0xA: case 0xB:
        if (BITS(i, 30, 26) == 0x05 || BITS(i, 31, 25) == 0x2A || BITS(i, 30, 25) == 0x1A ||
            BITS(i, 30, 25) == 0x1B || BITS(i, 31, 25) == 0x6B) {
            return C_BRANCH;
        }
        return C_SYS;
    case 0x5: case 0xD:
        return BITS(i, 28, 24) == 0x1B ? C_MUL : C_ALU;  /* data processing, register (3 source = multiply) */
    case 0x4: case 0x6: case 0xC: case 0xE:
        if (BITS(i, 26, 26)) {
            return is_load(i) ? C_VLD : C_VST;
        }
        return is_load(i) ? C_LD : C_ST;
    case 0x7:
        return BITS(i, 31, 31) ? C_VINT_Q : simd_vector(i);
    case 0xF:
        return simd_scalar(i);
    default:
        return C_OTHER;  /* SVE, SME, unallocated */
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uint64_t per_tb[N_CLASSES] = {0};
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (size_t k = 0; k < n; k++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
        uint32_t word = 0;
        if (qemu_plugin_insn_size(insn) == 4) {
            memcpy(&word, qemu_plugin_insn_data(insn), 4);
        }
        int c = classify(word);
        per_tb[c] += (c == C_VLD || c == C_VST) ? simd_mem_regs(word) : 1;
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
    for (int c = 0; c < N_CLASSES; c++) {
        if (per_tb[c]) {
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counts[c], per_tb[c]);
        }
    }
}

static void window_start(void)
{
    start_executed = executed;
    memcpy(start_counts, counts, sizeof counts);
}

static void window_stop(uint64_t id)
{
    fprintf(out, "%llu %llu", (unsigned long long)id, (unsigned long long)(executed - start_executed));
    for (int c = 0; c < N_CLASSES; c++) {
        fprintf(out, " %llu", (unsigned long long)(counts[c] - start_counts[c]));
    }
    fputc('\n', out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    if (plugin_setup(id, "insn_class", argc, argv, on_translate) != 0) {
        return -1;
    }
    fputs("classes", out);
    for (int c = 0; c < N_CLASSES; c++) {
        fprintf(out, " %s", class_names[c]);
    }
    fputc('\n', out);
    return 0;
}
