// The one place that includes torch's c10d headers. Only .cpp files of distributed/ include it,
// so the rest of the project compiles without Gloo's headers.
//
// LibTorch 1.13 (Debian) and 2.x both keep the headers in torch/csrc/distributed/c10d/, but the
// collectives' base class differs: 1.13 derives ProcessGroupGloo/NCCL from c10d::ProcessGroup,
// 2.x from c10d::Backend (ProcessGroup became a dispatcher over backends). Both expose the same
// allreduce/broadcast/allgather/barrier signatures, so CollectiveBackend names whichever it is.
#pragma once
#include <torch/version.h>

// The headers hide the Gloo and NCCL classes unless these are defined; torch itself was built
// with them (CMake checks that Gloo's headers exist, and that torch has CUDA before NCCL).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef DISTILLERY_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
namespace distillery::compat {
using CollectiveBackend = c10d::Backend;
}
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
namespace distillery::compat {
using CollectiveBackend = c10d::ProcessGroup;
}
#endif
