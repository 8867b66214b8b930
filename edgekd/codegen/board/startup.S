/* Reset handler: enable the FPU (CP10/CP11) first where the core has one, then copy .data and zero .bss
 * with Armv6-M instructions only (no loop the compiler could turn into FP/MVE code), then run main.
 * The .file name keeps gcc's temporary object name out of the symbol table (reproducible ELFs). */
    .file "startup.S"
    .syntax unified
    .thumb
    .text
    .global Reset_Handler
    .type Reset_Handler, %function
Reset_Handler:
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    ldr r0, =0xE000ED88
    ldr r1, [r0]
    ldr r2, =0x00F00000
    orrs r1, r1, r2
    str r1, [r0]
    dsb
    isb
#endif
    ldr r0, =_sidata
    ldr r1, =_sdata
    ldr r2, =_edata
1:  cmp r1, r2
    bhs 2f
    ldr r3, [r0]
    str r3, [r1]
    adds r0, r0, #4
    adds r1, r1, #4
    b 1b
2:  ldr r1, =_sbss
    ldr r2, =_ebss
    movs r3, #0
3:  cmp r1, r2
    bhs 4f
    str r3, [r1]
    adds r1, r1, #4
    b 3b
4:  bl main
    bl board_exit
5:  b 5b
    .size Reset_Handler, .-Reset_Handler
