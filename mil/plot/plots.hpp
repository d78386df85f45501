#pragma once
// PNG figures for dsmil_eval --plots, drawn with cairo: ROC curves of a labelled set and per-slide attention
// heatmaps on the patches' level-0 coordinates, optionally over a thumbnail of the whole-slide image read with
// OpenSlide. Pure std interface: cairo and OpenSlide stay inside plots.cpp.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mil {

// Where the ROC plot area lies in the PNG: fpr 0..1 maps to x .. x + w, tpr 0..1 to y + h .. y.
struct RocLayout {
  int width = 0, height = 0;  // of the PNG
  double x = 0, y = 0, w = 0, h = 0;
};

// One ROC curve per class (mil::roc_curve of probs[.][c] against targets[.][c]), the chance diagonal, axes
// with ticks and a legend "<class>: AUC 0.93" (AUC n/a, and no curve, for a class whose labels hold one value
// only). probs and targets are [slide][class] as in EvalResult. Throws mil::Error when the PNG cannot be written.
RocLayout write_roc_png(const std::string& path, const std::vector<std::vector<double>>& probs,
                        const std::vector<std::vector<int>>& targets, const std::vector<std::string>& class_names);

struct HeatmapOptions {
  int max_side = 1024;     // pixels on the long side of the map
  int64_t patch_size = 0;  // level-0 pixels; 0 = infer_patch_size(coords)
  std::string slide_path;  // whole-slide image drawn under the map ("" = none); unreadable: warning, no thumbnail
  double alpha = 0.5;      // opacity of the patches over a thumbnail (1 without one)
  std::string title;       // drawn above the map, e.g. "slide_01  attention (tumor)"
};

// Where the map lies in the PNG: level-0 point (x0 + u, y0 + v) is drawn at pixel
// (map_x + u * scale, map_y + v * scale).
struct HeatmapLayout {
  int width = 0, height = 0;  // of the PNG
  int map_x = 0, map_y = 0, map_w = 0, map_h = 0;
  double x0 = 0, y0 = 0, scale = 1;
  int64_t patch_size = 0;  // as used
  bool thumbnail = false;  // the slide was drawn under the map
};

// Each patch is a square of patch_size level-0 pixels at its coords (top-left corner), coloured by viridis of
// its min-max normalised score, with a colour bar labelled with the raw min and max. The map covers the coords'
// bounding box, or with a readable slide the whole slide. Throws mil::Error on size mismatches or a write failure.
HeatmapLayout write_heatmap_png(const std::string& path, const std::vector<std::array<int64_t, 2>>& coords,
                                const std::vector<double>& scores, const HeatmapOptions& options = {});

// The smallest non-zero difference between distinct x or y coordinates (the patch grid's step on CLAM grids);
// 256 when there is none (a single patch, one row and one column).
int64_t infer_patch_size(const std::vector<std::array<int64_t, 2>>& coords);

// The whole-slide image for slide_id in dir: dir/<slide_id>.<ext> for the extensions OpenSlide reads (svs, tif,
// tiff, ndpi, vms, vmu, scn, mrxs, svslide, bif), "" when there is none.
std::string find_slide_file(const std::string& dir, const std::string& slide_id);

// Viridis at t in [0, 1] (clamped) as 8-bit RGB; viridis_rgb(1) is the colour of the highest score.
std::array<uint8_t, 3> viridis_rgb(double t);

}  // namespace mil
