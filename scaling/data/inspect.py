"""``scaling data inspect``: a dataset summary (dict for --json, text for people) and verification."""

from __future__ import annotations

from pathlib import Path

from scaling.data.quality import quality_report


def _round(values, nd: int = 4) -> list[float]:
    return [round(float(v), nd) for v in values]


def summarize(path: str | Path, *, action_bound: float | None = None) -> dict:
    """Everything ``inspect`` shows, as one JSON-ready dict (keys include episodes, frames, tasks)."""
    from scaling.data.store import open_dataset

    ds = open_dataset(path)
    t = ds.episodes
    m = ds.manifest
    per_task = t.groupby("task").agg(episodes=("task", "size"), frames=("length", "sum"),
                                     success=("success", "mean"))
    stats = {}
    for key in ("action", "proprio"):
        s = ds.stats[key]
        stats[key] = {k: _round(s[k]) for k in ("mean", "std", "min", "max", "q01", "q99")}
    stats["image"] = {k: _round(ds.stats["image"][k]) for k in ("mean", "std")}
    stats["quantile_method"] = ds.stats.get("quantile_method")
    return {
        "path": str(ds.path),
        "format_version": m["format_version"],
        "generator": m.get("generator"), "generator_version": m.get("generator_version"), "seed": m.get("seed"),
        "sources": m.get("sources"),
        "episodes": ds.n_episodes,
        "frames": ds.n_frames,
        "shards": len(m["shards"]),
        "tasks": {task: {"episodes": int(r.episodes), "frames": int(r.frames),
                         "success_rate": round(float(r.success), 4)}
                  for task, r in per_task.iterrows()},
        "success_rate": round(float(t["success"].mean()), 4),
        "episode_length": {"min": int(t["length"].min()), "mean": round(float(t["length"].mean()), 2),
                           "max": int(t["length"].max())},
        "features": m["features"],
        "instructions": {"unique": int(t["instruction"].nunique()), "vocab_size": ds.tokenizer.vocab_size,
                         "max_len": ds.tokenizer.max_len},
        "split": {"train_episodes": int((~ds.is_val).sum()), "val_episodes": int(ds.is_val.sum()),
                  "train_frames": ds.n_train_frames, "val_frames": int(ds.val_indices().size)},
        "stats": stats,
        "quality": quality_report(t, m, action_bound=action_bound),
        # A manifest without these keys has no floor: unknown, like imported data.
        "loss_floor": m.get("loss_floor"),
        "loss_floor_per_dim": m.get("loss_floor_per_dim"),
        "loss_floor_method": m.get("loss_floor_method"),
        "meta": m.get("meta", {}),
    }


def verify(path: str | Path) -> list[str]:
    """Problems found by reading every shard (empty when the dataset is intact)."""
    from scaling.data.store import open_dataset

    return open_dataset(path).verify()


def format_summary(s: dict) -> str:
    """The human-readable form of ``summarize``'s dict."""
    q = s["quality"]
    lines = [
        f"dataset      {s['path']}  (format {s['format_version']}, {s['generator']} {s['generator_version']}, "
        f"seed {s['seed']})",
        f"episodes     {s['episodes']}   frames {s['frames']}   shards {s['shards']}   "
        f"success {100 * s['success_rate']:.1f}%",
        f"length       min {s['episode_length']['min']}  mean {s['episode_length']['mean']}  "
        f"max {s['episode_length']['max']}",
        "features     " + "  ".join(f"{k} {tuple(v['shape'])} {v['dtype']}" for k, v in s["features"].items()),
        f"split        train {s['split']['train_episodes']} episodes / {s['split']['train_frames']} frames, "
        f"val {s['split']['val_episodes']} episodes / {s['split']['val_frames']} frames",
        f"instructions {s['instructions']['unique']} unique, vocabulary {s['instructions']['vocab_size']} "
        f"tokens, max length {s['instructions']['max_len']}",
        f"tasks        {len(s['tasks'])}",
    ]
    for task, r in s["tasks"].items():
        lines.append(f"  {task:<28} {r['episodes']:>6} episodes {r['frames']:>8} frames  "
                     f"success {100 * r['success_rate']:.1f}%")
    lines.append(f"stats        (quantiles: {s['stats']['quantile_method']})")
    for key in ("action", "proprio"):
        st = s["stats"][key]
        for name in ("mean", "std", "q01", "q99"):
            lines.append(f"  {key:<8}{name:<5} " + " ".join(f"{v:+.3f}" for v in st[name]))
    img = s["stats"]["image"]
    lines.append("  image   mean  " + " ".join(f"{v:.3f}" for v in img["mean"]) + "   std "
                 + " ".join(f"{v:.3f}" for v in img["std"]))
    if s.get("loss_floor") is None:
        lines.append("loss floor   unknown" + (f" ({s['loss_floor_method']})" if s.get("loss_floor_method")
                                               else " (written before datasets recorded it)"))
    else:
        per_dim = " ".join(f"{v:.4f}" for v in s.get("loss_floor_per_dim") or [])
        lines.append(f"loss floor   {s['loss_floor']:.4f} nats per action dimension (per dimension {per_dim})")
        lines.append(f"  method     {s['loss_floor_method']}")
    bounds = q["action_bounds"]
    lines.append(
        f"quality      nonfinite {q['nonfinite']}  failed {q['failed']}  duplicate {q['duplicate']}  "
        f"out_of_bounds {q['out_of_bounds'] if bounds is not None else 'n/a (no bounds)'}  "
        f"idle frames {q['idle_frames']} in {q['idle_episodes']} episodes"
    )
    return "\n".join(lines)

