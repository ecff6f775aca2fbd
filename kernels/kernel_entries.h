// Prototypes of every kernel entry point, and the list the emulator registers. Each parameter is a GM
// address (8 bytes in the packed argument block), in declaration order.
#ifndef ASCEND_COLD_KERNEL_ENTRIES_H
#define ASCEND_COLD_KERNEL_ENTRIES_H

#include <cstdint>

extern "C" {
// Emulator self-test: z[i] = x[i] + y[i] for i < *n (f32), blocks striding over i.
void emu_selftest_add_f32(uint8_t* x, uint8_t* y, uint8_t* z, uint8_t* n);
}

#define ASCEND_COLD_KERNELS(X) X(emu_selftest_add_f32)

#endif
