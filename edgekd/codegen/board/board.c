/* Board harness: vector table, semihosting I/O, stack high-water mark. Test vectors live in .testio,
 * a region outside the budgeted FLASH and RAM. */
#include <stddef.h>
#include <stdint.h>
#include "model.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_EXIT_EXTENDED 0x20

extern uint32_t _sstack, _estack;
void Reset_Handler(void);
void board_exit(int status);
int main(void);

static int8_t in_buf[EDGEKD_INPUT_SIZE] __attribute__((section(".testio")));
static int8_t out_buf[EDGEKD_OUTPUT_SIZE] __attribute__((section(".testio")));
static uint32_t stats[2] __attribute__((section(".testio")));

static int semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void board_exit(int status) {
  uint32_t block[2];
  block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
  block[1] = (uint32_t)status;
  semihost(SYS_EXIT_EXTENDED, block);
  for (;;) {
  }
}

static void fault_handler(void) { board_exit(@FAULT_STATUS@); }

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler};

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = (uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = (uint8_t *)dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

static int file_open(const char *name, int mode) {
  uint32_t block[3];
  uint32_t len = 0;
  while (name[len]) ++len;
  block[0] = (uint32_t)name;
  block[1] = (uint32_t)mode;
  block[2] = len;
  return semihost(SYS_OPEN, block);
}

static int file_io(int op, int handle, void *buf, uint32_t len) {
  uint32_t block[3];
  block[0] = (uint32_t)handle;
  block[1] = (uint32_t)buf;
  block[2] = len;
  return semihost(op, block); /* bytes NOT transferred */
}

int main(void) {
  int fin = file_open("x.bin", 1), fout = file_open("y.bin", 5), fstat;
  uint32_t *p, sp, n = 0;
  if (fin < 0 || fout < 0) return 10;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (p = &_sstack; p < (uint32_t *)(sp - 128u); ++p) *(volatile uint32_t *)p = @PAINT@u;
  while (file_io(SYS_READ, fin, in_buf, EDGEKD_INPUT_SIZE) == 0) {
    if (edgekd_invoke(in_buf, out_buf) != 0) return 11;
    if (file_io(SYS_WRITE, fout, out_buf, EDGEKD_OUTPUT_SIZE) != 0) return 12;
    ++n;
  }
  for (p = &_sstack; p < &_estack && *(volatile uint32_t *)p == @PAINT@u; ++p) {
  }
  stats[0] = n;
  stats[1] = (uint32_t)((uint8_t *)&_estack - (uint8_t *)p);
  fstat = file_open("stats.bin", 5);
  if (fstat < 0 || file_io(SYS_WRITE, fstat, stats, sizeof stats) != 0) return 13;
  semihost(SYS_CLOSE, &fout);
  return 0;
}
