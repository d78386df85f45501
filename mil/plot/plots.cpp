#include "mil/plot/plots.hpp"

#include <cairo.h>
#include <openslide.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>

#include "mil/eval/metrics.hpp"
#include "mil/io/files.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
struct SlideDeleter {
  void operator()(openslide_t* s) const { openslide_close(s); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;
using Slide = std::unique_ptr<openslide_t, SlideDeleter>;

constexpr double kPi = 3.14159265358979323846;

// Matplotlib's viridis at 10 evenly spaced stops; linear interpolation between them is visually exact.
constexpr std::array<std::array<uint8_t, 3>, 10> kViridis = {{{68, 1, 84},
                                                              {72, 40, 120},
                                                              {62, 74, 137},
                                                              {49, 104, 142},
                                                              {38, 130, 142},
                                                              {31, 158, 137},
                                                              {53, 183, 121},
                                                              {109, 205, 89},
                                                              {180, 222, 44},
                                                              {253, 231, 37}}};

// Matplotlib's tab10, for the ROC curves of up to 10 classes (then it repeats).
constexpr std::array<std::array<double, 3>, 10> kTab10 = {{{0.122, 0.467, 0.706},
                                                           {1.000, 0.498, 0.055},
                                                           {0.173, 0.627, 0.173},
                                                           {0.839, 0.153, 0.157},
                                                           {0.580, 0.404, 0.741},
                                                           {0.549, 0.337, 0.294},
                                                           {0.890, 0.467, 0.761},
                                                           {0.498, 0.498, 0.498},
                                                           {0.737, 0.741, 0.133},
                                                           {0.090, 0.745, 0.812}}};

Surface new_surface(const std::string& path, int width, int height) {
  Surface s(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height));
  if (cairo_surface_status(s.get()) != CAIRO_STATUS_SUCCESS) {
    throw Error(path, "",
                fmt::format("cannot create a {}x{} image: {}", width, height,
                            cairo_status_to_string(cairo_surface_status(s.get()))));
  }
  return s;
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

// Encoded in memory and written atomically, so an interrupted run never leaves a truncated PNG.
void save_png(cairo_surface_t* surface, const std::string& path) {
  cairo_surface_flush(surface);
  std::string bytes;
  const cairo_status_t status = cairo_surface_write_to_png_stream(surface, append_bytes, &bytes);
  if (status != CAIRO_STATUS_SUCCESS) {
    throw Error(path, "", std::string("cannot encode the PNG: ") + cairo_status_to_string(status));
  }
  io::write_file_atomically(path, bytes);
}

void set_font(cairo_t* cr, double size, bool bold = false) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

// Draws `text` with its anchor point at (x, y): ax/ay 0 = left/top, 0.5 = centre, 1 = right/bottom.
void draw_text(cairo_t* cr, const std::string& text, double x, double y, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, text.c_str(), &e);
  cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
  cairo_show_text(cr, text.c_str());
}

double text_width(cairo_t* cr, const std::string& text) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, text.c_str(), &e);
  return e.x_advance;
}

Slide open_slide(const std::string& path) {
  Slide slide(openslide_open(path.c_str()));
  if (!slide) {
    spdlog::warn("[plot] {}: not a slide OpenSlide can read; heatmap drawn without a thumbnail", path);
    return nullptr;
  }
  if (const char* err = openslide_get_error(slide.get())) {
    spdlog::warn("[plot] {}: OpenSlide cannot open it ({}); heatmap drawn without a thumbnail", path, err);
    return nullptr;
  }
  return slide;
}

// The level-0 rectangle of the layout read from the slide at the map's scale into a map_w x map_h image, or
// nullptr (with a warning) when OpenSlide fails. Reads the best pyramid level for the scale in blocks of at
// most ~4k x 4k level pixels, each scaled into its own whole-pixel block of the thumbnail (no seams, bounded
// memory even for a slide without a pyramid).
Surface read_thumbnail(openslide_t* slide, const std::string& path, const HeatmapLayout& L) {
  const double downsample = 1.0 / L.scale;
  const int32_t level = openslide_get_best_level_for_downsample(slide, downsample);
  const double level_ds = level >= 0 ? openslide_get_level_downsample(slide, level) : -1;
  if (level < 0 || !(level_ds > 0)) {
    spdlog::warn("[plot] {}: OpenSlide has no level for downsample {:.1f}; heatmap drawn without a thumbnail", path,
                 downsample);
    return nullptr;
  }
  const double f = downsample / level_ds;  // level pixels per thumbnail pixel
  if (f > 16) {
    spdlog::info("[plot] {}: nearest level {} has downsample {:.1f} for {:.1f} wanted: slow thumbnail", path, level,
                 level_ds, downsample);
  }
  Surface thumb = new_surface(path, L.map_w, L.map_h);
  Context cr(cairo_create(thumb.get()));
  const int block = std::max(1, static_cast<int>(4096 / std::max(f, 1.0)));  // thumbnail pixels per block side
  std::vector<uint32_t> pixels;
  for (int r0 = 0; r0 < L.map_h; r0 += block) {
    for (int c0 = 0; c0 < L.map_w; c0 += block) {
      const int r1 = std::min(L.map_h, r0 + block), c1 = std::min(L.map_w, c0 + block);
      // One extra level pixel on each far side feeds the bilinear filter at the block's edge.
      const auto lx0 = static_cast<int64_t>(std::floor(c0 * f)), ly0 = static_cast<int64_t>(std::floor(r0 * f));
      const auto lw = static_cast<int64_t>(std::ceil(c1 * f)) + 1 - lx0;
      const auto lh = static_cast<int64_t>(std::ceil(r1 * f)) + 1 - ly0;
      pixels.assign(static_cast<size_t>(lw * lh), 0);
      openslide_read_region(slide, pixels.data(), static_cast<int64_t>(L.x0 + lx0 * level_ds),
                            static_cast<int64_t>(L.y0 + ly0 * level_ds), level, lw, lh);
      if (const char* err = openslide_get_error(slide)) {
        spdlog::warn("[plot] {}: OpenSlide cannot read level {} ({}); heatmap drawn without a thumbnail", path, level,
                     err);
        return nullptr;
      }
      // OpenSlide's premultiplied ARGB words are cairo's ARGB32 pixels as they are.
      Surface tile(cairo_image_surface_create_for_data(reinterpret_cast<unsigned char*>(pixels.data()),
                                                       CAIRO_FORMAT_ARGB32, static_cast<int>(lw), static_cast<int>(lh),
                                                       static_cast<int>(lw * 4)));
      cairo_save(cr.get());
      cairo_rectangle(cr.get(), c0, r0, c1 - c0, r1 - r0);
      cairo_clip(cr.get());
      cairo_scale(cr.get(), 1 / f, 1 / f);
      cairo_set_source_surface(cr.get(), tile.get(), static_cast<double>(lx0), static_cast<double>(ly0));
      cairo_pattern_set_filter(cairo_get_source(cr.get()), CAIRO_FILTER_GOOD);
      cairo_pattern_set_extend(cairo_get_source(cr.get()), CAIRO_EXTEND_PAD);
      cairo_paint(cr.get());
      cairo_restore(cr.get());
      cairo_surface_finish(tile.get());  // done with `pixels` before they are reused
    }
  }
  return thumb;
}

}  // namespace

std::array<uint8_t, 3> viridis_rgb(double t) {
  t = std::isnan(t) ? 0.0 : std::clamp(t, 0.0, 1.0);
  const double pos = t * (kViridis.size() - 1);
  const size_t i = std::min(static_cast<size_t>(pos), kViridis.size() - 2);
  const double w = pos - static_cast<double>(i);
  std::array<uint8_t, 3> rgb{};
  for (size_t k = 0; k < 3; ++k) {
    rgb[k] = static_cast<uint8_t>(std::lround((1 - w) * kViridis[i][k] + w * kViridis[i + 1][k]));
  }
  return rgb;
}

int64_t infer_patch_size(const std::vector<std::array<int64_t, 2>>& coords) {
  int64_t step = 0;
  for (size_t axis = 0; axis < 2; ++axis) {
    std::vector<int64_t> v(coords.size());
    for (size_t i = 0; i < coords.size(); ++i) v[i] = coords[i][axis];
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    for (size_t i = 1; i < v.size(); ++i) step = step == 0 ? v[i] - v[i - 1] : std::min(step, v[i] - v[i - 1]);
  }
  return step > 0 ? step : 256;
}

std::string find_slide_file(const std::string& dir, const std::string& slide_id) {
  static const char* const kExtensions[] = {"svs", "tif", "tiff", "ndpi",    "vms",
                                            "vmu", "scn", "mrxs", "svslide", "bif"};
  std::error_code ec;
  for (const char* ext : kExtensions) {
    std::string upper(ext);
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
    for (const std::string& e : {std::string(ext), upper}) {
      const std::filesystem::path p = std::filesystem::path(dir) / (slide_id + "." + e);
      if (std::filesystem::is_regular_file(p, ec)) return p.string();
    }
  }
  return "";
}

namespace {

// Grid, frame, ticks, tick labels, axis titles and the title of a ROC plot with layout L.
void draw_roc_axes(cairo_t* cr, const RocLayout& L, size_t slides) {
  auto px = [&](double fpr) { return L.x + fpr * L.w; };
  auto py = [&](double tpr) { return L.y + (1 - tpr) * L.h; };
  set_font(cr, 12);
  for (int i = 0; i <= 5; ++i) {
    const double v = i / 5.0;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, px(v), L.y), cairo_line_to(cr, px(v), L.y + L.h);
    cairo_move_to(cr, L.x, py(v)), cairo_line_to(cr, L.x + L.w, py(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, px(v), L.y + L.h), cairo_line_to(cr, px(v), L.y + L.h + 5);
    cairo_move_to(cr, L.x, py(v)), cairo_line_to(cr, L.x - 5, py(v));
    cairo_stroke(cr);
    const std::string label = fmt::format("{:.1f}", v);
    draw_text(cr, label, px(v), L.y + L.h + 9, 0.5, 0);
    draw_text(cr, label, L.x - 9, py(v), 1, 0.5);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, L.x, L.y, L.w, L.h);
  cairo_stroke(cr);
  set_font(cr, 14);
  draw_text(cr, "False positive rate", L.x + L.w / 2, L.y + L.h + 32, 0.5, 0);
  cairo_save(cr);
  cairo_translate(cr, 18, L.y + L.h / 2);
  cairo_rotate(cr, -kPi / 2);
  draw_text(cr, "True positive rate", 0, 0, 0.5, 0.5);
  cairo_restore(cr);
  set_font(cr, 15, true);
  draw_text(cr, fmt::format("ROC ({} slides)", slides), L.x + L.w / 2, 12, 0.5, 0);

  // Chance diagonal.
  cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
  cairo_set_line_width(cr, 1);
  const double dash[] = {5, 4};
  cairo_set_dash(cr, dash, 2, 0);
  cairo_move_to(cr, px(0), py(0)), cairo_line_to(cr, px(1), py(1));
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
}

// One curve per class; a class with one label value only has no curve. Returns the legend's lines.
std::vector<std::string> draw_roc_curves(cairo_t* cr, const RocLayout& L, const std::string& path,
                                         const std::vector<std::vector<double>>& probs,
                                         const std::vector<std::vector<int>>& targets,
                                         const std::vector<std::string>& class_names) {
  auto px = [&](double fpr) { return L.x + fpr * L.w; };
  auto py = [&](double tpr) { return L.y + (1 - tpr) * L.h; };
  std::vector<std::string> legend;
  for (size_t c = 0; c < class_names.size(); ++c) {
    std::vector<double> scores(probs.size());
    std::vector<int> labels(probs.size());
    for (size_t n = 0; n < probs.size(); ++n) {
      if (probs[n].size() != class_names.size() || targets[n].size() != class_names.size()) {
        throw Error(path, "", fmt::format("row {} does not have {} classes", n, class_names.size()));
      }
      scores[n] = probs[n][c];
      labels[n] = targets[n][c];
    }
    const double auc = roc_auc(scores, labels);
    legend.push_back(class_names[c] + (std::isnan(auc) ? ": AUC n/a" : fmt::format(": AUC {:.3f}", auc)));
    if (std::isnan(auc)) continue;
    const RocCurve roc = roc_curve(scores, labels);
    const auto& rgb = kTab10[c % kTab10.size()];
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, 2.5);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (size_t i = 0; i < roc.fpr.size(); ++i) {
      (i == 0 ? cairo_move_to : cairo_line_to)(cr, px(roc.fpr[i]), py(roc.tpr[i]));
    }
    cairo_stroke(cr);
  }
  return legend;
}

// The legend in the lower-right corner, where a useful curve never goes.
void draw_roc_legend(cairo_t* cr, const RocLayout& L, const std::vector<std::string>& legend) {
  set_font(cr, 12);
  double text_w = 0;
  for (const auto& s : legend) text_w = std::max(text_w, text_width(cr, s));
  const double row = 18, box_w = text_w + 42, box_h = row * static_cast<double>(legend.size()) + 8;
  const double bx = L.x + L.w - box_w - 8, by = L.y + L.h - box_h - 8;
  cairo_rectangle(cr, bx, by, box_w, box_h);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  for (size_t c = 0; c < legend.size(); ++c) {
    const double y = by + 4 + row * (static_cast<double>(c) + 0.5);
    const auto& rgb = kTab10[c % kTab10.size()];
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_set_line_width(cr, 2.5);
    cairo_move_to(cr, bx + 8, y), cairo_line_to(cr, bx + 30, y);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text(cr, legend[c], bx + 36, y, 0, 0.5);
  }
}

// Where the map goes: the patches' bounding box, or with a slide the whole slide (and any patch outside it),
// scaled to max_side, with room for the title and the colour bar.
HeatmapLayout heatmap_layout(const std::vector<std::array<int64_t, 2>>& coords, const HeatmapOptions& options,
                             openslide_t* slide, int& bar_h) {
  HeatmapLayout L;
  L.patch_size = options.patch_size > 0 ? options.patch_size : infer_patch_size(coords);
  double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
  for (const auto& c : coords) {
    x0 = std::min(x0, static_cast<double>(c[0])), y0 = std::min(y0, static_cast<double>(c[1]));
    x1 = std::max(x1, static_cast<double>(c[0] + L.patch_size));
    y1 = std::max(y1, static_cast<double>(c[1] + L.patch_size));
  }
  if (slide != nullptr) {
    int64_t w = 0, h = 0;
    openslide_get_level0_dimensions(slide, &w, &h);
    x0 = std::min(x0, 0.0), y0 = std::min(y0, 0.0);
    x1 = std::max(x1, static_cast<double>(w)), y1 = std::max(y1, static_cast<double>(h));
  }
  L.x0 = x0, L.y0 = y0;
  L.scale = options.max_side / std::max(x1 - x0, y1 - y0);
  L.map_w = std::max(1, static_cast<int>(std::lround((x1 - x0) * L.scale)));
  L.map_h = std::max(1, static_cast<int>(std::lround((y1 - y0) * L.scale)));
  const int margin = 12, title_h = options.title.empty() ? 0 : 26, bar_w = 18, label_w = 80;
  bar_h = std::max(L.map_h, 160);
  L.map_x = margin, L.map_y = margin + title_h;
  L.width = L.map_x + L.map_w + 16 + bar_w + label_w;
  L.height = L.map_y + bar_h + margin;
  return L;
}

// Patches in rising score order, so the hottest stay visible where patches overlap or shrink below a pixel;
// edges snapped to whole pixels so neighbours tile without seams.
void draw_patches(cairo_t* cr, const HeatmapLayout& L, const std::vector<std::array<int64_t, 2>>& coords,
                  const std::vector<double>& scores, double alpha) {
  const auto [lo, hi] = std::minmax_element(scores.begin(), scores.end());
  const double lo_v = *lo, span = *hi - *lo;
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
  for (size_t i : order) {
    const auto edge = [&](double level0, double origin, int offset) {
      return offset + static_cast<int>(std::floor((level0 - origin) * L.scale));
    };
    const int px0 = edge(static_cast<double>(coords[i][0]), L.x0, L.map_x);
    const int py0 = edge(static_cast<double>(coords[i][1]), L.y0, L.map_y);
    const int px1 = std::max(px0 + 1, edge(static_cast<double>(coords[i][0] + L.patch_size), L.x0, L.map_x));
    const int py1 = std::max(py0 + 1, edge(static_cast<double>(coords[i][1] + L.patch_size), L.y0, L.map_y));
    // Equal scores carry no ranking: the middle of the scale.
    const auto rgb = viridis_rgb(span > 0 ? (scores[i] - lo_v) / span : 0.5);
    cairo_set_source_rgba(cr, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, alpha);
    cairo_rectangle(cr, px0, py0, px1 - px0, py1 - py0);
    cairo_fill(cr);
  }
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_DEFAULT);
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, L.map_x - 0.5, L.map_y - 0.5, L.map_w + 1, L.map_h + 1);
  cairo_stroke(cr);
}

// Colour bar: the same stops as viridis_rgb, top = highest score, labelled with the raw range.
void draw_colour_bar(cairo_t* cr, const HeatmapLayout& L, int bar_h, double lo, double hi) {
  const int bar_w = 18;
  const double bar_x = L.map_x + L.map_w + 16, bar_y = L.map_y;
  cairo_pattern_t* gradient = cairo_pattern_create_linear(0, bar_y + bar_h, 0, bar_y);
  for (size_t k = 0; k < kViridis.size(); ++k) {
    cairo_pattern_add_color_stop_rgb(gradient, static_cast<double>(k) / (kViridis.size() - 1), kViridis[k][0] / 255.0,
                                     kViridis[k][1] / 255.0, kViridis[k][2] / 255.0);
  }
  cairo_rectangle(cr, bar_x, bar_y, bar_w, bar_h);
  cairo_set_source(cr, gradient);
  cairo_fill(cr);
  cairo_pattern_destroy(gradient);
  cairo_set_source_rgb(cr, 0, 0, 0);
  set_font(cr, 11);
  draw_text(cr, fmt::format("{:.3g}", hi), bar_x + bar_w + 5, bar_y, 0, 0);
  draw_text(cr, fmt::format("{:.3g}", lo), bar_x + bar_w + 5, bar_y + bar_h, 0, 1);
  cairo_save(cr);
  cairo_translate(cr, bar_x + bar_w + 12, bar_y + bar_h / 2.0);
  cairo_rotate(cr, -kPi / 2);
  draw_text(cr, "attention", 0, 0, 0.5, 0);
  cairo_restore(cr);
}

}  // namespace

RocLayout write_roc_png(const std::string& path, const std::vector<std::vector<double>>& probs,
                        const std::vector<std::vector<int>>& targets, const std::vector<std::string>& class_names) {
  if (probs.size() != targets.size()) {
    throw Error(path, "", fmt::format("{} score rows for {} label rows", probs.size(), targets.size()));
  }
  RocLayout L;
  L.x = 70, L.y = 40, L.w = 440, L.h = 440;
  L.width = 540, L.height = 540;
  Surface surface = new_surface(path, L.width, L.height);
  cairo_t* cr = cairo_create(surface.get());
  Context owner(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  draw_roc_axes(cr, L, probs.size());
  const std::vector<std::string> legend = draw_roc_curves(cr, L, path, probs, targets, class_names);
  draw_roc_legend(cr, L, legend);
  save_png(surface.get(), path);
  return L;
}

HeatmapLayout write_heatmap_png(const std::string& path, const std::vector<std::array<int64_t, 2>>& coords,
                                const std::vector<double>& scores, const HeatmapOptions& options) {
  if (coords.size() != scores.size()) {
    throw Error(path, "", fmt::format("{} coords for {} scores", coords.size(), scores.size()));
  }
  if (coords.empty()) throw Error(path, "", "no patches to draw");
  if (options.max_side < 16) throw Error(path, "", fmt::format("max_side {} is too small", options.max_side));
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) throw Error(path, "", fmt::format("the score of patch {} is not finite", i));
  }
  Slide slide = options.slide_path.empty() ? nullptr : open_slide(options.slide_path);
  int bar_h = 0;
  HeatmapLayout L = heatmap_layout(coords, options, slide.get(), bar_h);

  Surface surface = new_surface(path, L.width, L.height);
  cairo_t* cr = cairo_create(surface.get());
  Context owner(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  if (!options.title.empty()) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    set_font(cr, 14, true);
    draw_text(cr, options.title, L.map_x, 12, 0, 0);
  }
  if (slide) {
    if (Surface thumb = read_thumbnail(slide.get(), options.slide_path, L)) {
      cairo_set_source_surface(cr, thumb.get(), L.map_x, L.map_y);
      cairo_paint(cr);
      L.thumbnail = true;
    }
  }
  draw_patches(cr, L, coords, scores, L.thumbnail ? options.alpha : 1.0);
  const auto [lo, hi] = std::minmax_element(scores.begin(), scores.end());
  draw_colour_bar(cr, L, bar_h, *lo, *hi);
  save_png(surface.get(), path);
  return L;
}

}  // namespace mil
