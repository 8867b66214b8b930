// Torch-free ExecuTorch runner for the emulated Linux targets (and what a Pi / Linux-phone bundle can ship).
//
// usage: pte_runner MODEL.pte INPUTS.f32 OUTPUTS.f32 COUNT THREADS DIM...
// Reads COUNT float32 samples of shape DIM... (batch 1) from INPUTS.f32, runs "forward" on each and appends
// the float32 outputs to OUTPUTS.f32. Each forward is bracketed by marker syscalls that edgekd's QEMU
// plugin (insn_window.c) turns into per-invoke instruction counts; on a real device they return ENOSYS.
// THREADS=1 runs XNNPACK without its thread pool (what the counts need); otherwise the runtime default.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/extension/threadpool/threadpool_guard.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace {
constexpr long kMarkSyscall = 0xED6E;

int fail(const char* what) {
  std::fprintf(stderr, "pte_runner: %s\n", what);
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  using executorch::extension::Module;
  using executorch::extension::from_blob;
  if (argc < 7) {
    return fail("usage: pte_runner MODEL.pte INPUTS.f32 OUTPUTS.f32 COUNT THREADS DIM...");
  }
  const long count = std::atol(argv[4]);
  const int threads = std::atoi(argv[5]);
  std::vector<executorch::aten::SizesType> sizes;
  size_t numel = 1;
  for (int i = 6; i < argc; ++i) {
    sizes.push_back(static_cast<executorch::aten::SizesType>(std::atol(argv[i])));
    numel *= static_cast<size_t>(sizes.back());
  }
  std::unique_ptr<executorch::extension::threadpool::NoThreadPoolGuard> single;
  if (threads == 1) {
    single = std::make_unique<executorch::extension::threadpool::NoThreadPoolGuard>();
  }
  Module module(argv[1]);
  if (module.load_forward() != executorch::runtime::Error::Ok) {
    return fail("cannot load the forward method");
  }
  std::FILE* in = std::fopen(argv[2], "rb");
  std::FILE* out = std::fopen(argv[3], "wb");
  if (in == nullptr || out == nullptr) {
    return fail("cannot open the input or output file");
  }
  std::vector<float> sample(numel);
  for (long n = 0; n < count; ++n) {
    if (std::fread(sample.data(), sizeof(float), numel, in) != numel) {
      return fail("input file is shorter than COUNT samples");
    }
    auto tensor = from_blob(sample.data(), sizes);
    syscall(kMarkSyscall, 1L, n);
    auto result = module.forward(tensor);
    syscall(kMarkSyscall, 2L, n);
    if (!result.ok()) {
      return fail("forward failed");
    }
    const auto& y = result->at(0).toTensor();
    std::fwrite(y.const_data_ptr<float>(), sizeof(float), static_cast<size_t>(y.numel()), out);
  }
  std::fclose(in);
  return std::fclose(out) == 0 ? 0 : fail("cannot write the outputs");
}
