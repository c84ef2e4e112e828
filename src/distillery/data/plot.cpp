#include "distillery/data/plot.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "distillery/core/png.h"
#include "distillery/data/render.h"

namespace distillery {
namespace {

const Rgb kSeriesColours[] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},
                              {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                              {188, 189, 34},  {23, 190, 207}};
const Rgb kInk{20, 20, 20}, kGrid{225, 225, 225}, kPaper{255, 255, 255};

double tick_step(double low, double high, int max_ticks) {
  double raw = (high - low) / std::max(1, max_ticks - 1);
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0, 10.0})
    if (factor * magnitude >= raw) return factor * magnitude;
  return 10.0 * magnitude;
}

std::string tick_label(double value, double step) {
  if (std::abs(value) < step * 1e-6) value = 0;  // no "-0" or 1e-17
  double largest = std::max(std::abs(value), step);
  if (largest >= 1e6 || step < 1e-4) return fmt::format("{:.3g}", value);
  int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  return fmt::format("{:.{}f}", value, decimals);
}

// Thick line by stamping squares along a DDA walk.
void draw_line(const torch::Tensor& canvas, double x0, double y0, double x1, double y1, Rgb rgb,
               int64_t thickness) {
  double steps = std::max({std::abs(x1 - x0), std::abs(y1 - y0), 1.0});
  for (int64_t i = 0; i <= static_cast<int64_t>(std::ceil(steps)); ++i) {
    double t = std::min(1.0, i / steps);
    int64_t x = std::llround(x0 + (x1 - x0) * t), y = std::llround(y0 + (y1 - y0) * t);
    fill_rect(canvas, x - thickness / 2, y - thickness / 2, thickness, thickness, rgb);
  }
}

struct Range {
  double low = std::numeric_limits<double>::infinity();
  double high = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (std::isfinite(v)) low = std::min(low, v), high = std::max(high, v);
  }
  void finish() {
    if (!(low <= high)) low = 0, high = 1;
    if (high - low < 1e-12) {
      double spread = std::max(std::abs(low) * 0.1, 0.5);
      low -= spread, high += spread;
    }
  }
};

}  // namespace

std::vector<double> nice_ticks(double low, double high, int max_ticks) {
  double step = tick_step(low, high, max_ticks);
  // Integer multiples of the step: no accumulated rounding error.
  double first = std::floor(low / step + 1e-9), last = std::ceil(high / step - 1e-9);
  std::vector<double> ticks;
  for (double k = first; k <= last; k += 1) ticks.push_back(k * step);
  return ticks;
}

torch::Tensor render_line_plot(const std::string& title, const std::string& x_label,
                               const std::string& y_label, const std::vector<Series>& series,
                               int64_t width, int64_t height) {
  TORCH_CHECK(width >= 200 && height >= 150, "render_line_plot: image too small");
  Range x_range, y_range;
  for (const auto& s : series) {
    TORCH_CHECK(s.x.size() == s.y.size(), "series '", s.name, "': x and y lengths differ");
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) x_range.add(s.x[i]), y_range.add(s.y[i]);
  }
  x_range.finish(), y_range.finish();
  std::vector<double> x_ticks = nice_ticks(x_range.low, x_range.high);
  std::vector<double> y_ticks = nice_ticks(y_range.low, y_range.high);
  double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1.0;
  double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1.0;
  double x_low = x_ticks.front(), x_high = x_ticks.back();
  double y_low = y_ticks.front(), y_high = y_ticks.back();

  int64_t y_label_width = 0;
  for (double v : y_ticks) y_label_width = std::max(y_label_width, text_width(tick_label(v, y_step)));
  // Plot area: room on the left for the rotated axis label and tick labels, below for the x axis.
  const int64_t left = 14 + 12 + y_label_width + 6, right = width - 20;
  const int64_t top = 36, bottom = height - 40;
  auto px = [&](double x) { return left + (x - x_low) / (x_high - x_low) * (right - left); };
  auto py = [&](double y) { return bottom - (y - y_low) / (y_high - y_low) * (bottom - top); };

  torch::Tensor canvas = make_canvas(height, width, kPaper);
  for (double v : x_ticks) {
    int64_t x = std::llround(px(v));
    fill_rect(canvas, x, top, 1, bottom - top, kGrid);
    fill_rect(canvas, x, bottom, 1, 4, kInk);
    std::string label = tick_label(v, x_step);
    draw_text(canvas, x - text_width(label) / 2, bottom + 7, label, kInk);
  }
  for (double v : y_ticks) {
    int64_t y = std::llround(py(v));
    fill_rect(canvas, left, y, right - left, 1, kGrid);
    fill_rect(canvas, left - 4, y, 4, 1, kInk);
    std::string label = tick_label(v, y_step);
    draw_text(canvas, left - 6 - text_width(label), y - 3, label, kInk);
  }
  fill_rect(canvas, left, top, 1, bottom - top + 1, kInk);
  fill_rect(canvas, left, bottom, right - left + 1, 1, kInk);

  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    Rgb colour = kSeriesColours[k % (sizeof(kSeriesColours) / sizeof(kSeriesColours[0]))];
    bool have_previous = false;
    double previous_x = 0, previous_y = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        have_previous = false;
        continue;
      }
      double x = px(s.x[i]), y = py(s.y[i]);
      if (have_previous)
        draw_line(canvas, previous_x, previous_y, x, y, colour, 2);
      else
        draw_line(canvas, x, y, x, y, colour, 3);  // a lone point stays visible
      previous_x = x, previous_y = y, have_previous = true;
    }
  }

  draw_text(canvas, (width - text_width(title, 2)) / 2, 8, title, kInk, 2);
  draw_text(canvas, (left + right - text_width(x_label)) / 2, height - 14, x_label, kInk);
  if (!y_label.empty()) {
    // Vertical axis label: draw horizontally on a strip, then rotate a quarter turn.
    torch::Tensor strip = make_canvas(kGlyphHeight, text_width(y_label), kPaper);
    draw_text(strip, 0, 0, y_label, kInk);
    torch::Tensor rotated = torch::rot90(strip, 1, {0, 1}).contiguous();
    paste(canvas, rotated, 10, (top + bottom - rotated.size(0)) / 2);
  }

  // Legend, top right inside the plot area.
  int64_t name_width = 0;
  for (const auto& s : series) name_width = std::max(name_width, text_width(s.name));
  if (!series.empty()) {
    const int64_t box_width = 8 + 20 + 6 + name_width + 8;
    const int64_t box_height = 6 + 12 * static_cast<int64_t>(series.size()) + 2;
    const int64_t box_x = right - box_width - 8, box_y = top + 8;
    fill_rect(canvas, box_x - 1, box_y - 1, box_width + 2, box_height + 2, {160, 160, 160});
    fill_rect(canvas, box_x, box_y, box_width, box_height, kPaper);
    for (size_t k = 0; k < series.size(); ++k) {
      Rgb colour = kSeriesColours[k % (sizeof(kSeriesColours) / sizeof(kSeriesColours[0]))];
      int64_t row_y = box_y + 6 + 12 * static_cast<int64_t>(k);
      fill_rect(canvas, box_x + 8, row_y + 2, 20, 3, colour);
      draw_text(canvas, box_x + 8 + 20 + 6, row_y, series[k].name, kInk);
    }
  }
  return canvas;
}

void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series, int64_t width,
                     int64_t height) {
  write_png(path, render_line_plot(title, x_label, y_label, series, width, height));
}

}  // namespace distillery
