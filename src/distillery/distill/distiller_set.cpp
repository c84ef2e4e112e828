#include "distillery/distill/distiller_set.h"

#include <fmt/format.h>

#include "distillery/distill/components/schedule.h"
#include "distillery/distill/registry.h"

namespace distillery {

DistillerSetImpl::DistillerSetImpl(const std::vector<ConfigSection>& entries,
                                   const DistillerContext& context) {
  std::vector<std::string> known;
  std::string known_list;
  for (const auto& entry : distiller_registry()) {
    known.push_back(entry.name);
    known_list += (known_list.empty() ? "" : ", ") + entry.name;
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& params = entries[i];
    params.check(params.has("name"), "name", "missing; one of: " + known_list);
    Member member;
    member.name = params.get_choice("name", "", known);
    member.weight = params.get<double>("weight", 1.0);
    member.warmup_steps = params.get<int64_t>("warmup_steps", 0);
    params.check(member.weight >= 0, "weight", "must be >= 0");
    params.check(member.warmup_steps >= 0, "warmup_steps", "must be >= 0");
    member.distiller = create_distiller(member.name, context, params);
    // Index in the module name: the same method may appear twice with different settings.
    register_module(fmt::format("{}_{}", i, member.name), member.distiller);
    members_.push_back(std::move(member));
  }
}

LossTerms DistillerSetImpl::forward(const ModelOutput& student, const ModelOutput& teacher,
                                    const Batch& batch, const StepInfo& step) {
  LossTerms out;
  for (size_t i = 0; i < members_.size(); ++i) {
    const auto& member = members_[i];
    const double factor = WeightSchedule{member.weight, member.warmup_steps}.at(step);
    for (const auto& [term, value] : member.distiller->forward(student, teacher, batch, step).terms) {
      std::string key = term;
      if (out.terms.count(key)) key = member.name + "." + term;
      if (out.terms.count(key)) key = fmt::format("{}#{}.{}", member.name, i, term);
      out.add(key, factor * value);
    }
  }
  return out;
}

bool DistillerSetImpl::needs_teacher() const {
  for (const auto& member : members_)
    if (member.distiller->needs_teacher()) return true;
  return false;
}

TeacherReads DistillerSetImpl::teacher_reads() const {
  TeacherReads reads;
  for (const auto& member : members_)
    if (member.distiller->needs_teacher()) reads.merge(member.distiller->teacher_reads());
  return reads;
}

std::vector<std::string> DistillerSetImpl::names() const {
  std::vector<std::string> out;
  for (const auto& member : members_) out.push_back(member.name);
  return out;
}

}  // namespace distillery
