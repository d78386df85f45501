// The PNGs of dsmil_eval --plots, decoded again with cairo: sizes, where the hottest patch lands, ROC curves
// through the right corners, and thumbnails from a small tiled TIFF read by OpenSlide.
#include <cairo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>

#include "mil/plot/plots.hpp"
#include "mil/util/error.hpp"
#include "tests/test_util.hpp"

namespace mil {
namespace {

using Rgb = std::array<int, 3>;

struct Png {
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface{nullptr, cairo_surface_destroy};
  int width = 0, height = 0;

  explicit Png(const std::string& path) {
    surface.reset(cairo_image_surface_create_from_png(path.c_str()));
    EXPECT_EQ(cairo_surface_status(surface.get()), CAIRO_STATUS_SUCCESS) << path;
    width = cairo_image_surface_get_width(surface.get());
    height = cairo_image_surface_get_height(surface.get());
  }
  // Our PNGs are opaque, so the premultiplied ARGB32 words are plain RGB.
  Rgb at(int x, int y) const {
    uint32_t p = 0;
    std::memcpy(
        &p, cairo_image_surface_get_data(surface.get()) + y * cairo_image_surface_get_stride(surface.get()) + 4 * x, 4);
    return {static_cast<int>((p >> 16) & 255), static_cast<int>((p >> 8) & 255), static_cast<int>(p & 255)};
  }
};

int distance(const Rgb& a, const Rgb& b) {
  return std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2]);
}

Rgb rgb(const std::array<uint8_t, 3>& c) {
  return {c[0], c[1], c[2]};
}

// A cols x rows CLAM grid of `step` px patches starting at (x0, y0), row-major.
std::vector<std::array<int64_t, 2>> grid(int cols, int rows, int64_t step, int64_t x0 = 0, int64_t y0 = 0) {
  std::vector<std::array<int64_t, 2>> coords;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) coords.push_back({x0 + c * step, y0 + r * step});
  }
  return coords;
}

// Scores in [0, 0.3) with one hot patch at 1.
std::vector<double> scores_with_hot(size_t n, size_t hot) {
  std::vector<double> s(n);
  for (size_t i = 0; i < n; ++i) s[i] = 0.3 * std::fmod(static_cast<double>(i) * 0.618034, 1.0);
  s[hot] = 1.0;
  return s;
}

TEST(Plots, InferPatchSize) {
  EXPECT_EQ(infer_patch_size(grid(10, 8, 256, 1024, 512)), 256);
  EXPECT_EQ(infer_patch_size(grid(3, 1, 512)), 512);
  EXPECT_EQ(infer_patch_size({{{7, 9}}}), 256);            // one patch: the default
  EXPECT_EQ(infer_patch_size({{{0, 0}}, {{0, 0}}}), 256);  // duplicates are no spacing
}

TEST(Plots, ViridisEnds) {
  EXPECT_EQ(rgb(viridis_rgb(0)), (Rgb{68, 1, 84}));
  EXPECT_EQ(rgb(viridis_rgb(1)), (Rgb{253, 231, 37}));
  EXPECT_EQ(rgb(viridis_rgb(2)), rgb(viridis_rgb(1)));  // clamped
}

TEST(Plots, HeatmapPutsTheHottestPatchAtItsCoords) {
  test::TempDir dir;
  const auto coords = grid(10, 8, 256, 1024, 512);  // 2560 x 2048 level-0 pixels, off the origin
  const size_t hot = 3 * 10 + 6;                    // column 6, row 3
  const auto scores = scores_with_hot(coords.size(), hot);
  HeatmapOptions options;
  options.title = "slide_x  attention, class 1";
  const HeatmapLayout L = write_heatmap_png(dir.file("h.png"), coords, scores, options);
  EXPECT_EQ(L.patch_size, 256);
  EXPECT_FALSE(L.thumbnail);
  EXPECT_EQ(L.map_w, 1024);  // the long side
  EXPECT_EQ(L.map_h, 819);   // 2048 * 0.4, rounded
  EXPECT_DOUBLE_EQ(L.x0, 1024);
  EXPECT_DOUBLE_EQ(L.y0, 512);

  const Png png(dir.file("h.png"));
  ASSERT_EQ(png.width, L.width);
  ASSERT_EQ(png.height, L.height);
  const Rgb top = rgb(viridis_rgb(1));
  double sx = 0, sy = 0;
  int64_t count = 0;
  for (int y = L.map_y; y < L.map_y + L.map_h; ++y) {
    for (int x = L.map_x; x < L.map_x + L.map_w; ++x) {
      if (distance(png.at(x, y), top) <= 3) sx += x, sy += y, ++count;
    }
  }
  // One patch of 256 * 0.4 = 102.4 px a side is in the top colour, and only it.
  ASSERT_GT(count, 100 * 100);
  EXPECT_LT(count, 104 * 104);
  const double level0_x = L.x0 + (sx / static_cast<double>(count) + 0.5 - L.map_x) / L.scale;
  const double level0_y = L.y0 + (sy / static_cast<double>(count) + 0.5 - L.map_y) / L.scale;
  EXPECT_EQ(static_cast<int64_t>(std::floor((level0_x - 1024) / 256)), 6);
  EXPECT_EQ(static_cast<int64_t>(std::floor((level0_y - 512) / 256)), 3);
  EXPECT_NEAR(level0_x, static_cast<double>(coords[hot][0]) + 128, 4);
  EXPECT_NEAR(level0_y, static_cast<double>(coords[hot][1]) + 128, 4);

  // The coldest patch (score 0: patch 0) is viridis' bottom colour.
  const Rgb bottom = rgb(viridis_rgb(0));
  EXPECT_LE(distance(png.at(L.map_x + 20, L.map_y + 20), bottom), 3);
}

TEST(Plots, HeatmapRejectsMismatchedInput) {
  test::TempDir dir;
  EXPECT_THROW(write_heatmap_png(dir.file("a.png"), grid(2, 2, 256), {0.1, 0.2}), Error);
  EXPECT_THROW(write_heatmap_png(dir.file("b.png"), {}, {}), Error);
  EXPECT_THROW(write_heatmap_png(dir.file("c.png"), grid(1, 2, 256), {0.1, NAN}), Error);
  EXPECT_THROW(write_heatmap_png(dir.path() + "/no/such/dir/d.png", grid(2, 1, 256), {0.1, 0.2}), Error);
}

TEST(Plots, HeatmapWithoutAUsableSlideStillDraws) {
  test::TempDir dir;
  const auto coords = grid(4, 3, 256);
  const auto scores = scores_with_hot(coords.size(), 5);
  { std::ofstream(dir.file("bad.svs")) << "not a slide"; }
  for (const std::string& slide : {dir.file("missing.svs"), dir.file("bad.svs")}) {
    HeatmapOptions options;
    options.slide_path = slide;
    const HeatmapLayout L = write_heatmap_png(dir.file("h.png"), coords, scores, options);
    EXPECT_FALSE(L.thumbnail) << slide;
    const Png png(dir.file("h.png"));
    EXPECT_EQ(png.width, L.width) << slide;
    EXPECT_EQ(L.map_w, 1024) << slide;
  }
}

TEST(Plots, FindSlideFile) {
  test::TempDir dir;
  {
    std::ofstream(dir.file("a.ndpi")) << "x";
    std::ofstream(dir.file("b.SVS")) << "x";
    std::ofstream(dir.file("c.txt")) << "x";
  }
  EXPECT_EQ(find_slide_file(dir.path(), "a"), dir.file("a.ndpi"));
  EXPECT_EQ(find_slide_file(dir.path(), "b"), dir.file("b.SVS"));
  EXPECT_EQ(find_slide_file(dir.path(), "c"), "");
  EXPECT_EQ(find_slide_file(dir.path() + "/missing", "a"), "");
}

// A minimal uncompressed, tiled, little-endian RGB TIFF (what OpenSlide reads as a "generic tiled TIFF"):
// left half `left`, right half `right`. Written by hand so the test needs no libtiff headers.
void write_tiled_tiff(const std::string& path, uint32_t width, uint32_t height, const Rgb& left, const Rgb& right) {
  const uint32_t tile = 128, across = (width + tile - 1) / tile, down = (height + tile - 1) / tile;
  const uint32_t tiles = across * down, tile_bytes = tile * tile * 3;
  std::string out;
  auto u16 = [&](uint32_t v) { out.push_back(char(v & 255)), out.push_back(char(v >> 8 & 255)); };
  auto u32 = [&](uint32_t v) { u16(v & 0xffff), u16(v >> 16); };
  const uint16_t entries = 11;
  const uint32_t ifd = 8, bits_at = ifd + 2 + 12 * entries + 4, offsets_at = bits_at + 6 + 2;
  const uint32_t counts_at = offsets_at + 4 * tiles, data_at = counts_at + 4 * tiles;
  out += "II";
  u16(42), u32(ifd);
  u16(entries);
  auto entry = [&](uint16_t tag, uint16_t type, uint32_t count, uint32_t value) {
    u16(tag), u16(type), u32(count), u32(value);
  };
  entry(256, 4, 1, width);
  entry(257, 4, 1, height);
  entry(258, 3, 3, bits_at);
  entry(259, 3, 1, 1);  // no compression
  entry(262, 3, 1, 2);  // RGB
  entry(277, 3, 1, 3);
  entry(284, 3, 1, 1);  // chunky
  entry(322, 4, 1, tile);
  entry(323, 4, 1, tile);
  entry(324, 4, tiles, offsets_at);
  entry(325, 4, tiles, counts_at);
  u32(0);  // no next IFD
  u16(8), u16(8), u16(8), u16(0);
  for (uint32_t t = 0; t < tiles; ++t) u32(data_at + t * tile_bytes);
  for (uint32_t t = 0; t < tiles; ++t) u32(tile_bytes);
  for (uint32_t t = 0; t < tiles; ++t) {
    for (uint32_t y = 0; y < tile; ++y) {
      for (uint32_t x = 0; x < tile; ++x) {
        const Rgb& c = (t % across) * tile + x < width / 2 ? left : right;
        for (int k = 0; k < 3; ++k) out.push_back(static_cast<char>(c[static_cast<size_t>(k)]));
      }
    }
  }
  ASSERT_EQ(out.size(), data_at + tiles * tile_bytes);
  std::ofstream(path, std::ios::binary) << out;
}

TEST(Plots, HeatmapOverASlideThumbnail) {
  test::TempDir dir;
  const Rgb red{200, 40, 40}, blue{40, 40, 200};
  write_tiled_tiff(dir.file("slide.tif"), 640, 512, red, blue);
  // 10 x 8 patches of 64 px cover the slide, less the top-left and bottom-right ones.
  auto coords = grid(10, 8, 64);
  coords.erase(coords.end() - 1);
  coords.erase(coords.begin());
  const size_t hot = 3 * 10 + 6 - 1;
  const auto scores = scores_with_hot(coords.size(), hot);
  HeatmapOptions options;
  options.slide_path = dir.file("slide.tif");
  const HeatmapLayout L = write_heatmap_png(dir.file("h.png"), coords, scores, options);
  ASSERT_TRUE(L.thumbnail) << "OpenSlide did not read the test TIFF";
  EXPECT_EQ(L.map_w, 1024);
  EXPECT_EQ(L.map_h, 819);  // 512 * 1.6, rounded
  const Png png(dir.file("h.png"));
  ASSERT_EQ(png.width, L.width);
  auto pixel = [&](double level0_x, double level0_y) {
    return png.at(L.map_x + static_cast<int>((level0_x - L.x0) * L.scale),
                  L.map_y + static_cast<int>((level0_y - L.y0) * L.scale));
  };
  // Where no patch is drawn the slide shows as it is.
  EXPECT_LE(distance(pixel(32, 32), red), 6);
  EXPECT_LE(distance(pixel(640 - 32, 512 - 32), blue), 6);
  // The hot patch (in the right half) is half viridis' top colour, half the slide.
  const Rgb top = rgb(viridis_rgb(1));
  const Rgb blend{(top[0] + blue[0]) / 2, (top[1] + blue[1]) / 2, (top[2] + blue[2]) / 2};
  EXPECT_LE(distance(pixel(static_cast<double>(coords[hot][0]) + 32, static_cast<double>(coords[hot][1]) + 32), blend),
            6);
}

// Colour distances to `want` of the 5 x 5 pixels around the ROC plot point (fpr, tpr): {nearest, farthest}.
std::pair<int, int> around(const Png& png, const RocLayout& L, double fpr, double tpr, const Rgb& want) {
  const auto cx = static_cast<int>(std::lround(L.x + fpr * L.w)),
             cy = static_cast<int>(std::lround(L.y + (1 - tpr) * L.h));
  int nearest = 1 << 30, farthest = 0;
  for (int y = cy - 2; y <= cy + 2; ++y) {
    for (int x = cx - 2; x <= cx + 2; ++x) {
      nearest = std::min(nearest, distance(png.at(x, y), want));
      farthest = std::max(farthest, distance(png.at(x, y), want));
    }
  }
  return {nearest, farthest};
}

TEST(Plots, RocCurvesGoThroughTheRightCorners) {
  test::TempDir dir;
  const Rgb curve{31, 119, 180}, white{255, 255, 255};  // the first class's colour (tab10 blue)
  std::vector<std::vector<double>> perfect, inverted;
  std::vector<std::vector<int>> targets;
  for (int i = 0; i < 20; ++i) {
    const int label = i % 2;
    targets.push_back({label});
    perfect.push_back({0.05 * i / 2 + (label ? 0.5 : 0.0)});
    inverted.push_back({1.0 - perfect.back()[0]});
  }
  const RocLayout L = write_roc_png(dir.file("roc.png"), perfect, targets, {"tumor"});
  const Png png(dir.file("roc.png"));
  EXPECT_EQ(png.width, L.width);
  EXPECT_EQ(png.height, L.height);
  // A perfect classifier climbs the left edge, then runs along the top.
  EXPECT_LE(around(png, L, 0.0, 0.5, curve).first, 30);
  EXPECT_LE(around(png, L, 0.5, 1.0, curve).first, 30);
  EXPECT_EQ(around(png, L, 0.7, 0.3, white).second, 0);  // nothing below the diagonal

  write_roc_png(dir.file("inverted.png"), inverted, targets, {"tumor"});
  const Png inv(dir.file("inverted.png"));
  EXPECT_LE(around(inv, L, 0.5, 0.0, curve).first, 30);  // along the bottom
  EXPECT_EQ(around(inv, L, 0.3, 0.7, white).second, 0);
}

TEST(Plots, RocWithSeveralClassesAndAnUndefinedAuc) {
  test::TempDir dir;
  std::vector<std::vector<double>> probs;
  std::vector<std::vector<int>> targets;
  for (int i = 0; i < 12; ++i) {
    probs.push_back({0.1 * (i % 5), 0.5, 0.08 * (i % 7)});
    targets.push_back({i % 2, i % 3 == 0, 0});  // the third class never occurs: AUC n/a, no curve
  }
  const RocLayout L = write_roc_png(dir.file("roc.png"), probs, targets, {"a", "b", "c"});
  const Png png(dir.file("roc.png"));
  EXPECT_EQ(png.width, L.width);
  EXPECT_THROW(write_roc_png(dir.file("x.png"), probs, {{1}}, {"a", "b", "c"}), Error);
}

}  // namespace
}  // namespace mil
