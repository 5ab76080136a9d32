// The CUDA built-ins gpuptc's kernels use, given their meaning on the CPU.
//
// A kernel's source is compiled by the system's C++ compiler after this header. Each
// CUDA thread of a block is a fiber (ucontext) of one OS thread. A fiber runs until it
// reaches a barrier (__syncthreads) or an atomic, where it yields; the scheduler then
// resumes the block's other fibers in an order drawn from a seeded generator, and lets
// the fibers past a barrier only when every thread of the block has reached it (or
// returned). So code between two barriers interleaves across threads as it may on a GPU,
// and a schedule is reproduced by its seed. Blocks run one after the other, in an order
// drawn from the same generator; __shared__ variables are function statics, hence shared
// by the threads of the running block (and, unlike a GPU's, keep the previous block's
// values: a kernel that reads shared memory it did not write is not caught by this).
//
// The launcher generated for each kernel calls gpuptc_cuda_cpu::launch with CuPy's grid
// and block dimensions, a seed and the kernel's call.

#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

static thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace gpuptc_cuda_cpu {

enum class State { ready, at_barrier, returned };

struct Fiber {
    ucontext_t context;
    dim3 index;
    State state;
};

constexpr std::size_t STACK_BYTES = 64 * 1024;

struct Scheduler {
    ucontext_t home;
    std::vector<Fiber> fibers;
    std::vector<std::vector<char>> stacks;
    std::function<void()> kernel;
    std::mt19937_64 order;
    int current = -1;
    unsigned long long switches = 0;
};

static thread_local Scheduler scheduler;

// The running thread gives way: to the scheduler, which resumes it in its turn.
inline void yield(State state) {
    Fiber& me = scheduler.fibers[scheduler.current];
    me.state = state;
    scheduler.switches += 1;
    swapcontext(&me.context, &scheduler.home);
}

inline void thread_entry() {
    scheduler.kernel();
    scheduler.fibers[scheduler.current].state = State::returned;
}  // returns to scheduler.home (uc_link)

inline void make_fibers(unsigned int count) {
    scheduler.fibers.resize(count);
    while (scheduler.stacks.size() < count) scheduler.stacks.emplace_back(STACK_BYTES);
    for (unsigned int i = 0; i < count; ++i) {
        Fiber& fiber = scheduler.fibers[i];
        getcontext(&fiber.context);
        fiber.context.uc_stack.ss_sp = scheduler.stacks[i].data();
        fiber.context.uc_stack.ss_size = STACK_BYTES;
        fiber.context.uc_link = &scheduler.home;
        makecontext(&fiber.context, thread_entry, 0);
        fiber.index = {i % blockDim.x, (i / blockDim.x) % blockDim.y,
                       i / (blockDim.x * blockDim.y)};
        fiber.state = State::ready;
    }
}

// One block: rounds in which every ready thread runs once, in a drawn order, to its next
// yield; when none is ready, the threads at the barrier pass it together.
inline void run_block() {
    const unsigned int count = blockDim.x * blockDim.y * blockDim.z;
    make_fibers(count);
    std::vector<int> ready;
    for (;;) {
        ready.clear();
        for (unsigned int i = 0; i < count; ++i) {
            if (scheduler.fibers[i].state == State::ready) ready.push_back(static_cast<int>(i));
        }
        if (ready.empty()) {
            bool waiting = false;
            for (Fiber& fiber : scheduler.fibers) {
                if (fiber.state == State::at_barrier) {
                    fiber.state = State::ready;
                    waiting = true;
                }
            }
            if (!waiting) return;
            continue;
        }
        std::shuffle(ready.begin(), ready.end(), scheduler.order);
        for (int i : ready) {
            scheduler.current = i;
            threadIdx = scheduler.fibers[i].index;
            swapcontext(&scheduler.home, &scheduler.fibers[i].context);
        }
    }
}

// Every block of the grid, in a drawn order; the number of yields.
inline unsigned long long launch(const unsigned int* grid, const unsigned int* block,
                                 unsigned long long seed, std::function<void()> kernel) {
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    scheduler.kernel = std::move(kernel);
    scheduler.order.seed(seed);
    scheduler.switches = 0;
    std::vector<dim3> blocks;
    for (unsigned int z = 0; z < grid[2]; ++z)
        for (unsigned int y = 0; y < grid[1]; ++y)
            for (unsigned int x = 0; x < grid[0]; ++x) blocks.push_back({x, y, z});
    std::shuffle(blocks.begin(), blocks.end(), scheduler.order);
    for (const dim3& b : blocks) {
        blockIdx = b;
        run_block();
    }
    return scheduler.switches;
}

template <typename To, typename From>
inline To bit_cast(From value) {
    static_assert(sizeof(To) == sizeof(From), "a bit cast keeps the size");
    To out;
    std::memcpy(&out, &value, sizeof(To));
    return out;
}

}  // namespace gpuptc_cuda_cpu

// -- the built-ins ----------------------------------------------------------------------

inline void __syncthreads() { gpuptc_cuda_cpu::yield(gpuptc_cuda_cpu::State::at_barrier); }

template <typename T>
inline T atomicAdd(T* address, T value) {
    gpuptc_cuda_cpu::yield(gpuptc_cuda_cpu::State::ready);
    const T old = *address;
    *address = old + value;
    return old;
}

template <typename T>
inline T atomicExch(T* address, T value) {
    gpuptc_cuda_cpu::yield(gpuptc_cuda_cpu::State::ready);
    const T old = *address;
    *address = value;
    return old;
}

inline float __int_as_float(int v) { return gpuptc_cuda_cpu::bit_cast<float>(v); }
inline float __uint_as_float(unsigned int v) { return gpuptc_cuda_cpu::bit_cast<float>(v); }
inline unsigned int __float_as_uint(float v) { return gpuptc_cuda_cpu::bit_cast<unsigned int>(v); }
inline double __longlong_as_double(long long v) { return gpuptc_cuda_cpu::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return gpuptc_cuda_cpu::bit_cast<long long>(v); }
inline int __clzll(long long v) {
    return v == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(v));
}
using std::fabs;
using std::isfinite;
using std::isnan;
