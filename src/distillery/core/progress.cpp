#include "distillery/core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace distillery {
namespace {
std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02d}:{:02d}", s / 60, s % 60);
}
}  // namespace

bool ProgressBar::stdout_is_terminal() { return isatty(fileno(stdout)) != 0; }

ProgressBar::ProgressBar(std::string label, int64_t total, int64_t start)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      start_(start),
      position_(start),
      terminal_(stdout_is_terminal()),
      begin_(std::chrono::steady_clock::now()),
      last_draw_(begin_) {
  draw(false);
}

ProgressBar::~ProgressBar() {
  if (!finished_) finish(status_);
}

void ProgressBar::update(int64_t position, const std::string& status) {
  position_ = position;
  if (!status.empty()) status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  // Terminals redraw ~10x per second; logs get a line every 10 s.
  if (since >= (terminal_ ? 0.1 : 10.0)) draw(false);
}

void ProgressBar::finish(const std::string& status) {
  if (finished_) return;
  if (!status.empty()) status_ = status;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  last_draw_ = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(last_draw_ - begin_).count();
  int64_t done = position_ - start_;
  double rate = elapsed > 0 ? done / elapsed : 0.0;
  double eta = rate > 0 ? (total_ - position_) / rate : -1.0;
  double fraction = std::clamp(static_cast<double>(position_) / total_, 0.0, 1.0);
  std::string rate_text = rate >= 1 || rate == 0 ? fmt::format("{:.1f} it/s", rate)
                                                 : fmt::format("{:.2f} s/it", 1.0 / rate);
  std::string counts = fmt::format("{}/{}", position_, total_);
  std::string timing = fmt::format("{} < {}, {}", format_duration(elapsed),
                                   final_line ? "00:00" : format_duration(eta), rate_text);
  if (terminal_) {
    constexpr int kWidth = 24;
    int filled = static_cast<int>(fraction * kWidth);
    std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '-');
    std::fprintf(stdout, "\r\033[K%s [%s] %s %s %s", label_.c_str(), bar.c_str(), counts.c_str(),
                 timing.c_str(), status_.c_str());
    if (final_line) std::fputc('\n', stdout);
  } else {
    std::fprintf(stdout, "%s %3.0f%% %s %s %s\n", label_.c_str(), fraction * 100, counts.c_str(),
                 timing.c_str(), status_.c_str());
  }
  std::fflush(stdout);
}

}  // namespace distillery
