"""PyTorch ports of the task loss and the demo's distillers (src/distillery/distill/,
src/distillery/train/task_loss.cpp), op for op, with the demo recipes' settings."""
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = 255
MASKED_LOGIT = -1e4  # components/losses.cpp: exp() is 0, but 0 * log(p) stays finite


def resize_to(x, size):
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def resize_labels(targets, size):
    if tuple(targets.shape[-2:]) == tuple(size):
        return targets
    resized = F.interpolate(targets.unsqueeze(1).float(), size=tuple(size), mode="nearest")
    return resized.squeeze(1).long()


def valid_pixel_mask(targets, size):
    return resize_labels(targets, size) != IGNORE


def masked_mean(values, valid):
    kept = torch.where(valid, values, torch.zeros_like(values))
    return kept.sum() / valid.sum().to(values.dtype).clamp_min(1.0)


def pixel_cross_entropy_map(logits, labels):
    return F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="none")


def pixel_kl(student, teacher, T, valid):
    log_p_s = torch.log_softmax(student / T, 1)
    log_p_t = torch.log_softmax(teacher / T, 1)
    return T * T * masked_mean((log_p_t.exp() * (log_p_t - log_p_s)).sum(1), valid)


def channel_kl(student, teacher, T, valid):
    B, C = student.shape[:2]
    z_s = (student / T).reshape(B, C, -1)
    z_t = (teacher / T).reshape(B, C, -1)
    outside = valid.logical_not().reshape(B, 1, -1)
    z_s = z_s.masked_fill(outside, MASKED_LOGIT)
    z_t = z_t.masked_fill(outside, MASKED_LOGIT)
    log_p_s = torch.log_softmax(z_s, 2)
    log_p_t = torch.log_softmax(z_t, 2)
    return T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum() / (C * B)


def task_loss(logits, targets):
    """Cross entropy (ignore 255) on the logits upsampled bilinearly to the label size."""
    full = resize_to(logits, targets.shape[-2:])
    return F.cross_entropy(full, targets, ignore_index=IGNORE)


class PixelKD(nn.Module):
    """methods/pixel_kd.cpp: T^2 * mean over valid pixels of KL(p_t || p_s)."""

    def __init__(self, temperature=1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, s_logits, s_features, t_logits, t_features, targets):
        size = s_logits.shape[-2:]
        t = resize_to(t_logits.detach(), size)
        return {"kd": pixel_kl(s_logits, t, self.temperature, valid_pixel_mask(targets, size))}


class CWD(nn.Module):
    """methods/cwd.cpp on logits: weight 3, T 4, ignore pixels left out of each distribution."""

    def __init__(self, temperature=4.0, loss_weight=3.0):
        super().__init__()
        self.temperature, self.loss_weight = temperature, loss_weight

    def forward(self, s_logits, s_features, t_logits, t_features, targets):
        size = s_logits.shape[-2:]
        t = resize_to(t_logits.detach(), size)
        valid = valid_pixel_mask(targets, size)
        return {"cwd": self.loss_weight * channel_kl(s_logits, t, self.temperature, valid)}


class HeteroAKD(nn.Module):
    """methods/heteroakd.cpp with its defaults: linear (1x1 conv) projectors into the logits
    space for each student/teacher stage pair, CE reliability, KMM (tau 1), KEM over pixels,
    T 4, lambda_proj 1, lambda_mix 1, lambda_kd 0.1 (kd T 1), lambda_feat 0."""

    def __init__(self, student_channels, teacher_channels, num_classes, student_stages=(1, 2),
                 teacher_stages=(-2, -1), tau=1.0, temperature=4.0, lambda_proj=1.0,
                 lambda_mix=1.0, lambda_kd=0.1, kd_temperature=1.0):
        super().__init__()
        self.student_stages = [s % len(student_channels) for s in student_stages]
        self.teacher_stages = [t % len(teacher_channels) for t in teacher_stages]
        for k, (s, t) in enumerate(zip(self.student_stages, self.teacher_stages)):
            self.add_module(f"student_projector_{k}",
                            nn.Sequential(nn.Conv2d(student_channels[s], num_classes, 1)))
            self.add_module(f"teacher_projector_{k}",
                            nn.Sequential(nn.Conv2d(teacher_channels[t], num_classes, 1)))
        self.tau, self.temperature = tau, temperature
        self.lambda_proj, self.lambda_mix = lambda_proj, lambda_mix
        self.lambda_kd, self.kd_temperature = lambda_kd, kd_temperature

    def mix(self, z_s, z_t, labels):
        """KMM target and KEM pixel weights; a target, so no gradient."""
        with torch.no_grad():
            z_s, z_t = z_s.detach(), z_t.detach()
            valid = labels != IGNORE
            h_t = pixel_cross_entropy_map(z_t, labels)
            h_s = pixel_cross_entropy_map(z_s, labels)
            w = torch.softmax(torch.stack([-h_t / self.tau, -h_s / self.tau]), 0)
            z_mix = w[0].unsqueeze(1) * z_t + w[1].unsqueeze(1) * z_s
            T = self.temperature
            log_p_mix = torch.log_softmax(z_mix / T, 1)
            log_p_s = torch.log_softmax(z_s / T, 1)
            per_class = log_p_mix.exp() * (log_p_mix - log_p_s)
            B = z_s.size(0)
            discrepancy = per_class.sum(1).reshape(B, -1)
            valid_flat = valid.reshape(B, -1)
            count = valid_flat.sum(1, keepdim=True).to(z_s.dtype)
            weights = torch.softmax(discrepancy.masked_fill(valid_flat.logical_not(), float("-inf")), 1) * count
            weights = torch.where(valid_flat, weights, torch.zeros_like(weights)).reshape(labels.shape)
        return z_mix, weights, valid

    def mix_loss(self, z_s, z_mix, weights, valid):
        T = self.temperature
        log_p_mix = torch.log_softmax(z_mix / T, 1)
        log_p_s = torch.log_softmax(z_s / T, 1)
        per_class = log_p_mix.exp() * (log_p_mix - log_p_s)
        return T * T * masked_mean(weights * per_class.sum(1), valid)

    def forward(self, s_logits, s_features, t_logits, t_features, targets):
        proj_loss = mix_loss = None
        for k, (s, t) in enumerate(zip(self.student_stages, self.teacher_stages)):
            z_s = getattr(self, f"student_projector_{k}")(s_features[s])
            z_t = getattr(self, f"teacher_projector_{k}")(t_features[t].detach())
            labels_s = resize_labels(targets, z_s.shape[-2:])
            labels_t = resize_labels(targets, z_t.shape[-2:])
            proj = (masked_mean(pixel_cross_entropy_map(z_s, labels_s), labels_s != IGNORE) +
                    masked_mean(pixel_cross_entropy_map(z_t, labels_t), labels_t != IGNORE))
            z_mix, weights, valid = self.mix(z_s, resize_to(z_t, z_s.shape[-2:]), labels_s)
            mix = self.mix_loss(z_s, z_mix, weights, valid)
            proj_loss = proj if proj_loss is None else proj_loss + proj
            mix_loss = mix if mix_loss is None else mix_loss + mix
        terms = {"heteroakd.proj": self.lambda_proj * proj_loss,
                 "heteroakd.mix": self.lambda_mix * mix_loss}
        if self.lambda_kd > 0:
            size = s_logits.shape[-2:]
            t = resize_to(t_logits.detach(), size)
            terms["heteroakd.kd"] = self.lambda_kd * pixel_kl(s_logits, t, self.kd_temperature,
                                                              valid_pixel_mask(targets, size))
        return terms


# Exact parameter counts of the C++ distillers for (student, teacher deeplabv3_resnet18),
# printed by a throwaway program linked against libdistillery (2026-11-23).
CPP_DISTILLER_PARAMS = {
    ("kd", "segformer_b0"): 0,
    ("cwd", "segformer_b0"): 0,
    ("heteroakd", "segformer_b0"): 5324,
    ("heteroakd", "deeplabv3_resnet18_slim"): 5324,
    ("heteroakd", "segformer_b2"): 6732,
}


def create_distiller(name, student_channels, teacher_channels, num_classes=11):
    if name == "kd":
        return PixelKD(temperature=1.0)
    if name == "cwd":
        return CWD(temperature=4.0, loss_weight=3.0)
    if name == "heteroakd":
        return HeteroAKD(student_channels, teacher_channels, num_classes)
    raise ValueError(f"unknown distiller '{name}' (known: kd, cwd, heteroakd)")
