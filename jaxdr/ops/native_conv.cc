// A direct 3x3, stride-1, 'same' convolution for NHWC float32 maps, as an XLA FFI custom call
// on CPU (AVX-512); native_conv.py builds it and packs the weights; conv.py decides where it is used. XLA's CPU convolutions run 8-channel layers at
// about a third of the arithmetic rate of 32- or 64-channel ones, which is what a pruned
// network is made of; see benchmarks/results/surgery_speed.md.
//
// Output channels are computed in blocks held in one 16-lane register per output pixel:
//  - blocks of 16 channels: each tap multiplies one broadcast input value by the 16 weights;
//  - the last block of <= 8 channels: lanes hold (channel, input-channel parity) pairs, so a
//    broadcast of two adjacent input channels feeds all 16 lanes; the two parities are summed
//    at the end. This keeps 8-channel layers at full vector width.
// Work is split over (image, row band) items on XLA's intra-op thread pool.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

#ifndef __AVX512F__
#error "jaxdr's native conv needs AVX-512 (compile with -mavx512f or -march=native)"
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int kLanes = 16;
constexpr int kMaxPixels = 16;  // output pixels per register tile

struct Block {
  int64_t co0;   // first output channel
  int64_t nco;   // channels in the block (<= 16, or <= 8 when paired)
  bool paired;   // (channel, input parity) lanes
  int64_t offset;  // into the packed weights, floats
};

struct Problem {
  const float* x;
  float* y;
  const float* weights;  // packed by native_conv.py's _pack: per block [9][steps][16]
  int64_t n, h, w, cin, cout;
  int64_t cin_pad;  // cin rounded up to even
  int64_t band;     // output rows per work item
  std::vector<Block> blocks;
};

// The blocks of output channels and where their packed weights start: 16-channel blocks
// while more than 8 channels are left, then one paired block. native_conv.py packs alike.
int64_t PlanBlocks(Problem& p) {
  int64_t total = 0;
  for (int64_t co0 = 0; co0 < p.cout;) {
    const int64_t left = p.cout - co0;
    Block b;
    b.co0 = co0;
    b.paired = left <= 8;
    b.nco = b.paired ? left : std::min<int64_t>(left, kLanes);
    b.offset = total;
    total += 9 * (b.paired ? p.cin_pad / 2 : p.cin) * kLanes;
    p.blocks.push_back(b);
    co0 += b.nco;
  }
  return total;
}

// The padded input rows are stored channel-pair planar: [row][pair][column][2], so within a
// tile the P pixels of one channel pair sit at compile-time offsets (8 bytes apart).
// One tile: P output pixels of one row, one 16-channel block. `in` points at the padded
// column of the tile's first output pixel minus one, in the row above it.
template <int P>
inline void TileSingle(const float* in, int64_t row, int64_t pstride, int64_t cin,
                       const float* wt, float* out, int64_t cout, __mmask16 store_mask) {
  __m512 acc[P];
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_ps();
  for (int dy = 0; dy < 3; ++dy) {
    for (int dx = 0; dx < 3; ++dx) {
      const float* src = in + dy * row + dx * 2;
      for (int64_t ci = 0; ci < cin; ++ci, wt += kLanes) {
        const __m512 w = _mm512_loadu_ps(wt);
        const float* s = src + (ci >> 1) * pstride + (ci & 1);
        for (int p = 0; p < P; ++p) acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(s[2 * p]), w, acc[p]);
      }
    }
  }
  for (int p = 0; p < P; ++p) _mm512_mask_storeu_ps(out + p * cout, store_mask, acc[p]);
}

template <int P>
inline void TilePaired(const float* in, int64_t row, int64_t pstride, int64_t pairs,
                       const float* wt, float* out, int64_t cout, int64_t nco) {
  __m512 acc[P];
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_ps();
  for (int dy = 0; dy < 3; ++dy) {
    for (int dx = 0; dx < 3; ++dx) {
      const float* src = in + dy * row + dx * 2;
      for (int64_t cp = 0; cp < pairs; ++cp, wt += kLanes) {
        const __m512 w = _mm512_loadu_ps(wt);
        const double* s = reinterpret_cast<const double*>(src + cp * pstride);
        for (int p = 0; p < P; ++p) {  // (x[c], x[c+1]) repeated: a 64-bit broadcast load
          acc[p] = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(s[p])), w, acc[p]);
        }
      }
    }
  }
  // Lanes 2j (even input channels) + 2j+1 (odd) of pixels p and p+1 -> [p: 8 | p+1: 8].
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __mmask16 lo = static_cast<__mmask16>((1u << nco) - 1);
  const bool contiguous = nco == 8 && cout == 8;
  int p = 0;
  for (; p + 1 < P; p += 2) {
    const __m512 s = _mm512_add_ps(_mm512_permutex2var_ps(acc[p], even, acc[p + 1]),
                                   _mm512_permutex2var_ps(acc[p], odd, acc[p + 1]));
    if (contiguous) {
      _mm512_storeu_ps(out + p * cout, s);
    } else {
      _mm512_mask_storeu_ps(out + p * cout, lo, s);
      _mm512_mask_storeu_ps(out + (p + 1) * cout - 8, static_cast<__mmask16>(lo << 8), s);
    }
  }
  if (p < P) {
    const __m512 s = _mm512_add_ps(_mm512_permutex2var_ps(acc[p], even, acc[p]),
                                   _mm512_permutex2var_ps(acc[p], odd, acc[p]));
    _mm512_mask_storeu_ps(out + p * cout, lo, s);
  }
}

using SingleFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, float*, int64_t, __mmask16);
using PairedFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, float*, int64_t, int64_t);

template <int... Ps>
constexpr auto SingleTable(std::integer_sequence<int, Ps...>) {
  return std::array<SingleFn, sizeof...(Ps)>{&TileSingle<Ps + 1>...};
}
template <int... Ps>
constexpr auto PairedTable(std::integer_sequence<int, Ps...>) {
  return std::array<PairedFn, sizeof...(Ps)>{&TilePaired<Ps + 1>...};
}
const auto kSingle = SingleTable(std::make_integer_sequence<int, kMaxPixels>{});
const auto kPaired = PairedTable(std::make_integer_sequence<int, kMaxPixels>{});

// Output rows [y0, y1) of image i. `scratch` holds the zero-padded input rows y0-1 .. y1.
void RunItem(const Problem& p, int64_t i, int64_t y0, int64_t y1, std::vector<float>& scratch) {
  const int64_t pstride = 2 * (p.w + 2);
  const int64_t row = p.cin_pad / 2 * pstride;
  const int64_t rows = y1 - y0 + 2;
  scratch.assign(rows * row + 2 * kLanes, 0.0f);
  const float* img = p.x + i * p.h * p.w * p.cin;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t y = y0 - 1 + r;
    if (y < 0 || y >= p.h) continue;
    const float* src = img + y * p.w * p.cin;
    float* dst = scratch.data() + r * row + 2;  // column 0 is padding
    for (int64_t ci = 0; ci < p.cin; ++ci) {
      float* d = dst + (ci >> 1) * pstride + (ci & 1);
      for (int64_t x = 0; x < p.w; ++x) d[2 * x] = src[x * p.cin + ci];
    }
  }
  float* yimg = p.y + i * p.h * p.w * p.cout;
  for (int64_t y = y0; y < y1; ++y) {
    const float* in_row = scratch.data() + (y - y0) * row;
    float* out_row = yimg + y * p.w * p.cout;
    for (int64_t x0 = 0; x0 < p.w; x0 += kMaxPixels) {
      const int64_t tile = std::min<int64_t>(kMaxPixels, p.w - x0);
      for (const Block& b : p.blocks) {
        const float* wt = p.weights + b.offset;
        float* out = out_row + x0 * p.cout + b.co0;
        if (b.paired) {
          kPaired[tile - 1](in_row + 2 * x0, row, pstride, p.cin_pad / 2, wt, out, p.cout, b.nco);
        } else {
          kSingle[tile - 1](in_row + 2 * x0, row, pstride, p.cin, wt, out, p.cout,
                            static_cast<__mmask16>((1u << b.nco) - 1));
        }
      }
    }
  }
}

struct Shared {
  const Problem* problem;
  int64_t items, bands;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

void Work(Shared& s) {
  std::vector<float> scratch;
  const Problem& p = *s.problem;
  for (int64_t item; (item = s.next.fetch_add(1)) < s.items;) {
    const int64_t i = item / s.bands, band = item % s.bands;
    RunItem(p, i, band * p.band, std::min(p.h, (band + 1) * p.band), scratch);
    s.done.fetch_add(1, std::memory_order_release);
  }
}

ffi::Error Conv3x3(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> packed,
                   ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto yd = y->dimensions();
  if (xd.size() != 4 || yd.size() != 4 || yd[0] != xd[0] || yd[1] != xd[1] || yd[2] != xd[2]) {
    return ffi::Error::InvalidArgument("jaxdr_conv3x3: expects x [N, H, W, C] and y [N, H, W, Cout]");
  }
  Problem p;
  p.x = x.typed_data();
  p.y = y->typed_data();
  p.weights = packed.typed_data();
  p.n = xd[0], p.h = xd[1], p.w = xd[2], p.cin = xd[3], p.cout = yd[3];
  p.cin_pad = p.cin + (p.cin & 1);
  if (p.n * p.h * p.w * p.cout == 0) return ffi::Error::Success();
  if (PlanBlocks(p) != static_cast<int64_t>(packed.element_count())) {
    return ffi::Error::InvalidArgument("jaxdr_conv3x3: packed weights do not match the shapes");
  }
  if (p.cin == 0) {
    std::memset(p.y, 0, sizeof(float) * p.n * p.h * p.w * p.cout);
    return ffi::Error::Success();
  }

  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  // Enough items to balance the threads; whole images when the batch alone is enough.
  int64_t bands = 1;
  while (p.n * bands < 4 * threads && bands < p.h) bands *= 2;
  bands = std::min(bands, p.h);
  p.band = (p.h + bands - 1) / bands;
  bands = (p.h + p.band - 1) / p.band;

  auto shared = std::make_shared<Shared>();
  shared->problem = &p;
  shared->items = p.n * bands;
  shared->bands = bands;
  const int64_t helpers = std::min(threads, shared->items) - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([shared] { Work(*shared); });
  }
  Work(*shared);
  // Items taken by helpers are running; wait for them (helpers that start late find none).
  while (shared->done.load(std::memory_order_acquire) < shared->items) {
    _mm_pause();
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxdrConv3x3, Conv3x3,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
