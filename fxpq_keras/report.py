"""Reports of a FxP-QNet result: a per-layer markdown table and a PNG (bits per layer, trajectory)."""

from __future__ import annotations

import os
from typing import Any

from .host import memory_size
from .policy import Policy


def policy_table(policy: Policy) -> str:
    """Markdown: layer, data structure, format, bits, frac, elements, bits total; then totals and ratios."""
    lines = ["| layer | data structure | signed | bits | frac | elements | bits total |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in policy.table():
        frac = r["frac"]
        f = f"{min(frac)}..{max(frac)}" if isinstance(frac, list) else str(frac)
        lines.append(f"| {r['layer']} | {r['data_structure']} | {'yes' if r['signed'] else 'no'} | {r['bits']} | {f} "
                     f"| {r['elements']:,} | {r['total_bits']:,} |")
    m = policy.memory()
    lines += ["", "| paper accounting (each data structure at its own width) | bits | bits / 8 | float32 bits / 8 "
              "| ratio to float32 |", "|---|---:|---:|---:|---:|",
              f"| weights | {m.weight_bits:,} | {m.weight_bits / 8:,.0f} | {m.float32_weight_bits / 8:,.0f} "
              f"| {m.compression_weights:.2f}x |",
              f"| biases | {m.bias_bits:,} | {m.bias_bits / 8:,.0f} | {m.float32_bias_bits / 8:,.0f} "
              f"| {m.float32_bias_bits / max(m.bias_bits, 1):.2f}x |",
              f"| activations | {m.activation_bits:,} | {m.activation_bits / 8:,.0f} | "
              f"{m.float32_activation_bits / 8:,.0f} | {m.float32_activation_bits / max(m.activation_bits, 1):.2f}x |",
              f"| **total** | {m.total_bits:,} | {m.total_bits / 8:,.0f} | {m.float32_bits / 8:,.0f} "
              f"| **{m.compression_total:.2f}x** |"]
    return "\n".join(lines)


def device_table(result: Any) -> str:
    """Markdown: the device accounting of the result's fxp file (fxpq_keras.memory), names as in
    `fxpq inspect --json`: what the chip holds, next to the paper's bit count above it."""
    float_input = bool(getattr(result.options, "float_input", True))
    d = result.device_memory.to_dict()  # the same figures as the summary and `fxpq inspect`
    lines = [f"| device (fxp .tflite, {'float32' if float_input else 'integer'} input) | bytes |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in d.items()]
    return "\n".join(lines)


def markdown(result: Any, title: str = "FxP-QNet quantization report") -> str:
    """The whole report of a QuantizationResult as markdown."""
    o = result.options
    m, c = result.metrics, result.check_metrics
    what = "agreement with the float model" if o.self_distillation else "labeled accuracy"
    quality = (f"- {what}: {c.agreement:.2%} on {c.samples} calibration samples, {m.agreement:.2%} on the "
               f"{m.samples} that rank steps (KL {m.kl:.3e} nats)" if result.metric == "top1" else
               f"- relative output MSE {c.loss:.3%} on {c.samples} calibration samples" if result.metric == "snr"
               else f"- {result.budget.format_loss(c.loss)} on {c.samples} {result.budget_set}")
    extras = getattr(result, "extras", {})
    if "auc_float" in extras:
        quality += (f"\n- anomaly-score ROC AUC on {extras['samples']} labeled calibration samples: float "
                    f"{extras['auc_float']:.4f}, quantized {extras['auc_quantized']:.4f}")
    lines = [f"# {title}", "",
             f"- {result.budget_line()}"
             + (f"; memory target {o.memory_target:,} bytes" if o.memory_target else ""),
             quality,
             f"- search: {result.evaluations} network evaluations ({result.evaluated_samples:,} samples), "
             f"{result.seconds:.1f} s, peak memory (RSS) {memory_size(getattr(result, 'peak_rss_bytes', None))}; "
             f"{result.message}",
             f"- options: min_bits {o.min_bits}, max_bits {o.max_bits}, per-channel weight frac {o.per_channel}, "
             f"seed {o.seed}; mechanisms: dynamic fixed point {o.dynamic_fixed_point}, layer-wise adaptation "
             f"{o.layerwise}, prediction-error frac {o.error_statistics_frac}, self-distillation {o.self_distillation}",
             ""]
    if result.memory_target_met is not None:
        lines.insert(-1, f"- memory target met: {'yes' if result.memory_target_met else 'NO'}")
    speed = result.speed_line() if hasattr(result, "speed_line") else None
    if speed is not None:
        lines.insert(-1, f"- {speed}")
    if result.finetune:
        lines.insert(-1, f"- distillation fine-tuning (opt-in, not post-training): {result.finetune}")
    lines += ["## Formats and memory", "", policy_table(result.policy), "", device_table(result), ""]
    lines += ["## Search trajectory", "", "| step | action | data structure | bits | evaluations | memory ratio "
              "| agreement (decision) | agreement (check) |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for i, s in enumerate(result.trajectory):
        chk = "" if s.check_agreement is None else f"{s.check_agreement:.4f}"
        lines.append(f"| {i} | {s.action} | {s.key} | {s.bits if s.bits >= 0 else ''} | {s.evaluations} "
                     f"| {s.compression:.2f}x | {s.agreement:.4f} | {chk} |")
    return "\n".join(lines) + "\n"


def plot(result: Any, path: str) -> list[str]:
    """PNG: bits per data structure for every layer, and agreement vs memory along the search (steps a
    walk-back undid marked apart, the result as a star). Returns the trajectory panel's legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policy: Policy = result.policy
    layers = ["input"] + list(policy.layers)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.6, 1]})
    width = 0.27
    for j, (ds, color) in enumerate((("weights", "tab:blue"), ("bias", "tab:gray"), ("output", "tab:orange"))):
        xs, ys = [], []
        for i, layer in enumerate(layers):
            try:
                d = policy.get(layer, "output" if layer == "input" else ds)
            except KeyError:
                continue
            if layer == "input" and ds != "output":
                continue
            xs.append(i + (j - 1) * width)
            ys.append(d.bits)
        ax1.bar(xs, ys, width, label=ds if ds != "output" else "activations", color=color)
    ax1.set_xticks(range(len(layers)))
    ax1.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    ax1.set_ylabel("bits")
    ax1.set_title("bits per layer")
    ax1.legend(fontsize=8)
    points = trajectory_points(result)
    if points["kept"]:
        ax2.plot(*zip(*points["kept"]), ".-", color="tab:blue", label="accepted steps (kept)")
    if points["walked_back"]:
        ax2.plot(*zip(*points["walked_back"]), "x", color="tab:gray", ms=6,
                 label="walked back (break the budget on validation copies)")
    top1 = getattr(result, "metric", "top1") == "top1"
    ax2.plot(*points["result"], "*", color="tab:green", ms=15, mec="black", zorder=5,
             label=f"result: {points['result'][0]:.2f}x, {points['result'][1]:.2%}")
    limit = result.options.max_accuracy_drop
    # top-1: agreement against 1 - drop; any other metric (snr, anomaly, a user's): its loss against the limit
    ax2.axhline(1 - limit if top1 else limit, color="tab:red", ls="--", lw=1, label="budget")
    ax2.set_xlabel("total memory reduction vs float32 (x)")
    if top1:
        ax2.set_ylabel("agreement with float (check set)" if result.options.self_distillation else "label accuracy")
    else:
        ax2.set_ylabel(f"{'relative output MSE' if result.metric == 'snr' else result.metric + ' loss'} "
                       "against float (check set)")
    ax2.set_title(f"search trajectory ({result.evaluations} evaluations)")
    ax2.legend(fontsize=8)
    labels = [text.get_text() for text in ax2.get_legend().get_texts()]
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return labels


def trajectory_points(result: Any) -> dict[str, Any]:
    """(memory ratio, agreement) of the accepted steps the result kept, of those a walk-back (or a
    restart from the best uniform policy) undid, and of the result itself (the star of the plot).

    The trajectory is replayed: "start", "jump", "lower" and "uniform" (a restart) accept a policy,
    "back" with key "N step(s)" undoes the last N of them (search/phases/walkback.py)."""
    accepted: list[tuple[float, float]] = []
    undone: list[tuple[float, float]] = []
    top1 = getattr(result, "metric", "top1") == "top1"
    for s in result.trajectory:
        if top1:
            point = (s.compression, s.check_agreement if s.check_agreement is not None else s.agreement)
        else:
            point = (s.compression, s.check_loss if s.check_loss is not None else s.loss)
        if s.action == "uniform":
            undone += accepted
            accepted = [point]
        elif s.action in ("start", "jump", "lower"):
            accepted.append(point)
        elif s.action == "back":
            count = int(s.key.split()[0])
            undone += accepted[len(accepted) - count:]
            accepted = accepted[:len(accepted) - count]
    # the result is the last kept policy: its agreement on the same set as the line's (the check set)
    final = (result.policy.memory().compression_total,
             accepted[-1][1] if accepted else (result.check_metrics.agreement if top1 else result.check_metrics.loss))
    return {"kept": accepted, "walked_back": undone, "result": final}


def write_report(result: Any, outdir: str) -> dict[str, str]:
    """Write policy.json, report.md and report.png into outdir; returns their paths."""
    os.makedirs(outdir, exist_ok=True)
    paths = {"policy": os.path.join(outdir, "policy.json"), "report": os.path.join(outdir, "report.md"),
             "png": os.path.join(outdir, "report.png")}
    result.policy.to_json(paths["policy"])
    with open(paths["report"], "w") as fh:
        fh.write(markdown(result))
    plot(result, paths["png"])
    return paths


__all__ = ["device_table", "markdown", "plot", "policy_table", "trajectory_points", "write_report"]
