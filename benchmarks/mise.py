"""MISE versus the dense grid: seconds per mesh, query counts, batched throughput, refinement.

Fields (as in the reference note on the original code's CPU baseline):
  * sphere: logit(0.2) + 20 (0.4 - |p|), surface exactly at radius 0.4;
  * cbn: the sphere logit + 0.01 * DecoderCBatchNorm(p, c), default decoder
    (hidden 256, 5 blocks) with random parameters (the zero-initialised ones
    drawn from N(0, 0.02)), c ~ N(0, 1) of size 256, eval mode.

For each field and final resolution (128^3: r0=32 and 2 upsampling steps;
256^3: r0=32 and 3 steps) it prints the seconds per mesh of MISE
(`mise.extract_mesh`, split into network / bookkeeping / marching cubes) and
of the dense grid (`meshing.extract_mesh_dense`), their ratio, the points
queried, whether the two meshes are identical, the meshes per second of the
batched form (`mise.extract_meshes_batched`) and the cost of the optional
refinement, with the original's second-order gradient and with the
first-order one (`refine_mesh(second_order=False)`, exact for ReLU decoders;
the test field's sphere term is smooth, so the two differ slightly there).
Times are medians of warm runs (compilation excluded; the first call is
reported separately). Each case also times MISE with `subdivision='surface'`
(only the new corners of the fine cells the surface crosses are evaluated),
and with `--compare-marching-cubes` that plus the jitted marching cubes: the
fastest settings. `--compare-batch-points 100000` times the original's chunk
size against the default one (4096 points per call on the CPU).

With `--compare-marching-cubes` it also times marching cubes alone on the
sphere's dense grid at each resolution, and MISE with each: PyMCubes on the host
(`meshing.marching_cubes`) versus the jitted active-cell version
(`marching_cubes.marching_cubes`), both from a numpy grid to numpy arrays,
with their ratio and whether the vertex sets agree.

  python benchmarks/mise.py                                  # everything (dense CBN 256^3 takes minutes)
  python benchmarks/mise.py --skip-dense-cbn-256             # the usual run
  python benchmarks/mise.py --fields sphere --resolutions 128 --repeats 5
  python benchmarks/mise.py --only-marching-cubes --repeats 5  # PyMCubes vs JAX marching cubes only
"""

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from implicit_fields import decoders, losses, marching_cubes, meshing, mise  # noqa: E402

LOGIT_TH = losses.probability_to_logit(0.2)
RADIUS = 0.4


def sphere_logits(points, center=None):
    """[N, 3] -> [N]; surface at |p - center| = 0.4."""
    if center is not None:
        points = points - center[None, :]
    return LOGIT_TH + 20.0 * (RADIUS - jnp.linalg.norm(points, axis=-1))


def sphere_batched(codes, points):
    """codes [B, 3] (centres); points [B, N, 3] -> [B, N]."""
    return LOGIT_TH + 20.0 * (RADIUS - jnp.linalg.norm(points - codes[:, None, :], axis=-1))


def make_cbn(seed=0, c_dim=256):
    """The CBN decoder with random parameters; returns (variables, apply)."""
    decoder = decoders.DecoderCBatchNorm()
    key_init, key_noise = jax.random.split(jax.random.key(seed))
    variables = decoder.init(key_init, jnp.zeros((1, 8, 3)), jnp.zeros((1, c_dim)))
    leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
    keys = jax.random.split(key_noise, len(leaves))
    leaves = [
        0.02 * jax.random.normal(k, x.shape, x.dtype) if not np.any(np.asarray(x)) else x
        for k, x in zip(keys, leaves)
    ]
    variables = dict(variables, params=jax.tree_util.tree_unflatten(treedef, leaves))

    def apply(points, c):
        """points [B, N, 3], c [B, c_dim] -> [B, N] (eval mode)."""
        return decoder.apply(variables, points, c, train=False)

    return variables, apply


def make_cbn_fields():
    """The CBN test field: jitted `decode(c, points [N, 3]) -> [N]` and `batched(codes, points [B, N, 3])`."""
    _, cbn_apply = make_cbn()

    @jax.jit
    def decode(c, points):
        return sphere_logits(points) + 0.01 * cbn_apply(points[None], c[None])[0]

    def batched(codes, points):
        sphere = sphere_logits(points.reshape(-1, 3)).reshape(points.shape[:2])
        return sphere + 0.01 * cbn_apply(points, codes)

    return decode, batched


def first_and_median(call, repeats):
    """Times a first call (compilation included), then `median_time` of warm calls.

    Returns:
      (first-call seconds, median seconds, output of the last call).
    """
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    return (first,) + median_time(call, repeats)


def median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def same_mesh(a, b):
    (va, fa), (vb, fb) = a[:2], b[:2]
    if fa.shape != fb.shape or not np.array_equal(fa, fb):
        return "faces differ"
    return f"identical (max |dv| {np.abs(va - vb).max() if len(va) else 0.0:.1e})"


def compare_marching_cubes(args, fn, res):
    """Times PyMCubes and the jitted marching cubes on one dense grid; prints and returns a row."""
    values = meshing.evaluate_points(fn, meshing.grid_points(res), args.batch_points).reshape((res + 1,) * 3)
    print(f"\n== marching cubes, sphere {res}^3 ==", flush=True)
    first, t_jax, (v, f) = first_and_median(
        lambda: marching_cubes.marching_cubes(values, LOGIT_TH), args.repeats
    )
    t_pmc, (vr, fr) = median_time(lambda: meshing.marching_cubes(values, LOGIT_TH), args.repeats)
    from scipy.spatial import cKDTree

    gap = max(cKDTree(vr).query(v)[0].max(), cKDTree(v).query(vr)[0].max()) if len(v) and len(vr) else 0.0
    same = f"same set: {len(v) == len(vr) and gap < 1e-6} (max gap {gap:.1e})"
    print(
        f"PyMCubes {t_pmc:.4f} s  JAX {t_jax:.4f} s (first call {first:.2f} s)  PyMCubes / JAX = "
        f"{t_pmc / t_jax:.2f}x  vertices {len(v):,} (PyMCubes {len(vr):,}, {same})  "
        f"faces {len(f):,} (PyMCubes {len(fr):,})",
        flush=True,
    )
    return {"res": res, "pymcubes": t_pmc, "jax": t_jax}


def batch_label(args):
    return f"batch_points={args.batch_points or meshing.default_batch_points():,}"


def _gradient_name(second_order):
    return "second-order (original)" if second_order else "first-order"


def time_refinement(refine_fn, v, f, steps, second_order, repeats):
    """Times `mise.refine_mesh`; returns (median s, first-call s, distance before, after).

    The distance to the iso-surface is |f - logit(0.2)| / 20 to first order: both
    test fields have a slope of ~20 logits per unit.
    """
    first, t_ref, v_ref = first_and_median(
        lambda: mise.refine_mesh(refine_fn, v, f, steps=steps, second_order=second_order), repeats
    )
    err0 = np.abs(np.asarray(refine_fn(jnp.asarray(v))) - LOGIT_TH).mean() / 20.0
    err1 = np.abs(np.asarray(refine_fn(jnp.asarray(v_ref))) - LOGIT_TH).mean() / 20.0
    return t_ref, first, err0, err1


def run_case(args, label, res, fn, batched_fn, codes, fn_for_code, refine_fn, refine_steps, repeats, dense):
    """Times one field at one resolution; prints and returns a summary row."""
    steps = int(np.log2(res // args.resolution0))
    assert args.resolution0 * 2**steps == res, (res, args.resolution0)
    kw = dict(resolution0=args.resolution0, upsampling_steps=steps, batch_points=args.batch_points)
    print(f"\n== {label} ==", flush=True)

    def mise_run(**options):
        """First-call and median seconds of `mise.extract_mesh` with `kw` updated by `options`."""
        options = dict(kw, **options)
        return first_and_median(lambda: mise.extract_mesh(fn, return_stats=True, **options), repeats)

    first, t_mise, (v, f, st) = mise_run()
    dense_points = (res + 1) ** 3
    print(
        f"MISE : {t_mise:8.3f} s/mesh (first call {first:.2f} s)  network {st['time_network']:.3f}  "
        f"bookkeeping {st['time_refine_bookkeeping']:.3f}  marching cubes {st['time_marching_cubes']:.3f}"
    )
    print(
        f"       queries {st['num_queries']:,} = {100 * st['num_queries'] / dense_points:.1f}% of "
        f"{dense_points:,}  per level {st['queries_per_level']}  rounds {st['rounds']}  "
        f"{len(v):,} vertices {len(f):,} faces",
        flush=True,
    )
    row = {
        "case": label,
        "mise": t_mise,
        "queries": st["num_queries"],
        "dense": None,
        "network": st["time_network"],
    }
    if args.compare_batch_points:
        _, t_b, (vb, fb, sb) = mise_run(batch_points=args.compare_batch_points)
        print(
            f"MISE with batch_points={args.compare_batch_points:,}: {t_b:8.3f} s/mesh  network "
            f"{sb['time_network']:.3f}  ({t_b / t_mise:.2f}x the time with {batch_label(args)});  "
            f"meshes: {same_mesh((vb, fb), (v, f))}",
            flush=True,
        )
    if not args.skip_surface:
        _, t_s, (vs, fs, ss) = mise_run(subdivision="surface")
        row["surface"] = t_s
        print(
            f"MISE subdivision='surface': {t_s:8.3f} s/mesh  network {ss['time_network']:.3f}  queries "
            f"{ss['num_queries']:,} ({ss['num_queries'] / st['num_queries']:.2f}x) per level "
            f"{ss['queries_per_level']}  rounds {ss['rounds']}  cells / surface = {t_mise / t_s:.2f}x;  "
            f"meshes: {same_mesh((vs, fs), (v, f))}",
            flush=True,
        )
    if args.compare_marching_cubes:
        _, t_jmc, (vj, fj, sj) = mise_run(marching_cubes="jax")
        print(
            f"MISE with JAX marching cubes: {t_jmc:8.3f} s/mesh  "
            f"marching cubes {sj['time_marching_cubes']:.3f} "
            f"(PyMCubes {st['time_marching_cubes']:.3f})  {len(vj):,} vertices {len(fj):,} faces",
            flush=True,
        )
        if not args.skip_surface:
            _, t_f, (_, _, sf) = mise_run(subdivision="surface", marching_cubes="jax")
            row["fast"], row["fast_network"] = t_f, sf["time_network"]
            print(
                f"MISE subdivision='surface' + JAX marching cubes: {t_f:8.3f} s/mesh  network "
                f"{sf['time_network']:.3f}  bookkeeping {sf['time_refine_bookkeeping']:.3f}  marching cubes "
                f"{sf['time_marching_cubes']:.3f}  ({t_mise / t_f:.2f}x faster than plain MISE)",
                flush=True,
            )

    if dense == "skip":
        print("dense: skipped")
    else:
        if dense == "warm_chunk":  # compile the chunk shape only (a dense run takes minutes)
            meshing.evaluate_points(fn, meshing.grid_points(8)[:1], args.batch_points)
        else:
            meshing.extract_mesh_dense(fn, resolution=res, batch_points=args.batch_points)
        t_dense, dense_mesh = median_time(
            lambda: meshing.extract_mesh_dense(
                fn, resolution=res, batch_points=args.batch_points, return_stats=True
            ),
            repeats,
        )
        ds = dense_mesh[2]
        row["dense"] = t_dense
        print(
            f"dense: {t_dense:8.3f} s/mesh  network {ds['time_network']:.3f}  marching cubes "
            f"{ds['time_marching_cubes']:.3f}  queries {ds['num_queries']:,}"
        )
        print(f"       dense / MISE = {t_dense / t_mise:.1f}x;  meshes: {same_mesh((v, f), dense_mesh)}")

    if not args.skip_batched and args.batch > 1:

        def batched_run(**options):
            options = dict(kw, **options)
            return first_and_median(
                lambda: mise.extract_meshes_batched(batched_fn, codes, return_stats=True, **options), repeats
            )

        first, t_batch, (meshes, bs) = batched_run()
        row["batched"] = args.batch / t_batch
        print(
            f"batched x{args.batch}: {t_batch:8.3f} s = {args.batch / t_batch:.2f} meshes/s "
            f"(single: {1 / t_mise:.2f}; first call {first:.2f} s)  refine {bs['time_refine']:.3f}  "
            f"marching cubes {bs['time_marching_cubes']:.3f}  rounds {bs['rounds']}  "
            f"queries {bs['num_queries']}"
        )
        single = mise.extract_mesh(fn_for_code(codes[0]), **kw)
        print(f"       object 0 batched vs alone: {same_mesh(meshes[0], single)}", flush=True)
        if args.compare_marching_cubes:
            _, t_bj, (_, bj) = batched_run(marching_cubes="jax")
            row["batched_jax_mc"] = args.batch / t_bj
            print(
                f"batched x{args.batch} with JAX marching cubes: {t_bj:8.3f} s = {args.batch / t_bj:.2f} "
                f"meshes/s  marching cubes {bj['time_marching_cubes']:.3f} (PyMCubes "
                f"{bs['time_marching_cubes']:.3f})",
                flush=True,
            )

    orders = {"second": [True], "first": [False], "both": [True, False]}[args.refine_gradient]
    for second_order in orders if refine_steps > 0 else []:
        t_ref, first, err0, err1 = time_refinement(refine_fn, v, f, refine_steps, second_order, repeats)
        row["refine" if second_order else "refine_first"] = t_ref
        print(
            f"{_gradient_name(second_order)} refinement: {refine_steps} steps on {len(f):,} faces "
            f"{t_ref:.3f} s ({t_ref / refine_steps:.3f} s/step; first call {first:.2f} s); MISE + refinement "
            f"{t_mise + t_ref:.3f} s/mesh; mean |f - logit(0.2)| / 20 (~distance to the surface) "
            f"{err0:.2e} -> {err1:.2e}",
            flush=True,
        )
    if refine_steps > 0 and args.simplify_nfaces > 0:
        # The original's demo pipeline: simplify to a face budget, then 30 refinement steps.
        t_simp, (vs, fs) = median_time(lambda: meshing.simplify_mesh(v, f, args.simplify_nfaces), repeats)
        steps = args.simplified_refine_steps
        for second_order in orders:
            t_ref, first, err0, err1 = time_refinement(refine_fn, vs, fs, steps, second_order, repeats)
            row["simplify_refine" if second_order else "simplify_refine_first"] = t_simp + t_ref
            row["simplify_refine_steps"] = steps
            print(
                f"simplify {len(f):,} -> {len(fs):,} faces {t_simp:.3f} s, then {steps} "
                f"{_gradient_name(second_order)} refinement steps {t_ref:.3f} s ({t_ref / steps:.4f} s/step; "
                f"first call {first:.2f} s); MISE + simplify + refine {t_mise + t_simp + t_ref:.3f} s/mesh; "
                f"mean |f - logit(0.2)| / 20 {err0:.2e} -> {err1:.2e}",
                flush=True,
            )
    return row


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fields", nargs="+", default=["sphere", "cbn"], choices=["sphere", "cbn"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[128, 256], choices=[64, 128, 256, 512])
    parser.add_argument("--resolution0", type=int, default=32)
    parser.add_argument(
        "--batch-points",
        type=int,
        default=0,
        help="points per network call; 0: the library's default (CPU 4096, GPU/TPU 100k)",
    )
    parser.add_argument(
        "--compare-batch-points",
        type=int,
        default=0,
        help="also time MISE with this many points per call (e.g. 100000, the original's)",
    )
    parser.add_argument(
        "--skip-surface",
        action="store_true",
        help="skip MISE with subdivision='surface' (fewer queries, same mesh here)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the sphere cases (median)")
    parser.add_argument("--cbn-repeats", type=int, default=1, help="timed runs of the CBN cases")
    parser.add_argument("--batch", type=int, default=4, help="objects in the batched form")
    parser.add_argument("--refine-steps", type=int, default=30, help="refinement steps (sphere)")
    parser.add_argument("--cbn-refine-steps", type=int, default=3, help="refinement steps (CBN; 0: skip)")
    parser.add_argument(
        "--simplify-nfaces",
        type=int,
        default=5000,
        help="face budget of the simplify-then-refine case (original demo: 5000; 0: skip)",
    )
    parser.add_argument(
        "--simplified-refine-steps",
        type=int,
        default=30,
        help="refinement steps after simplification (original demo: 30)",
    )
    parser.add_argument("--skip-dense", action="store_true", help="skip every dense-grid case")
    parser.add_argument(
        "--skip-dense-cbn-256", action="store_true", help="skip the slow dense CBN 256^3 case"
    )
    parser.add_argument("--skip-batched", action="store_true")
    parser.add_argument(
        "--refine-gradient",
        default="both",
        choices=["second", "first", "both"],
        help="refinement gradient(s) to time: the original's second-order one, the "
        "first-order one (exact for ReLU decoders), or both",
    )
    parser.add_argument(
        "--compare-marching-cubes",
        action="store_true",
        help="also time PyMCubes vs the jitted marching cubes on the sphere's dense grid",
    )
    parser.add_argument(
        "--only-marching-cubes",
        action="store_true",
        help="only the marching cubes comparison (implies --compare-marching-cubes)",
    )
    args = parser.parse_args()

    args.batch_points = args.batch_points or None  # None: meshing.default_batch_points()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, {batch_label(args)}")
    rng = np.random.default_rng(0)
    sphere_fn = jax.jit(sphere_logits)
    sphere_codes = jnp.asarray(rng.uniform(-0.05, 0.05, size=(max(args.batch, 1), 3)).astype(np.float32))
    mc_rows = []
    if args.compare_marching_cubes or args.only_marching_cubes:
        mc_rows = [compare_marching_cubes(args, sphere_fn, res) for res in args.resolutions]
    rows = []
    for field in [] if args.only_marching_cubes else args.fields:
        if field == "sphere":
            fn, batched_fn, codes = sphere_fn, sphere_batched, sphere_codes
            refine_fn, repeats = sphere_fn, args.repeats
            refine_steps = args.refine_steps

            def fn_for_code(code):
                return jax.jit(functools.partial(sphere_logits, center=code))

        else:
            cbn_decode, cbn_batched = make_cbn_fields()
            codes = jnp.asarray(rng.normal(size=(max(args.batch, 1), 256)).astype(np.float32))
            fn, batched_fn = functools.partial(cbn_decode, codes[0]), cbn_batched
            refine_fn, repeats = jax.tree_util.Partial(cbn_decode, codes[0]), args.cbn_repeats
            refine_steps = args.cbn_refine_steps

            def fn_for_code(code, cbn_decode=cbn_decode):
                return functools.partial(cbn_decode, code)

        for res in args.resolutions:
            if args.skip_dense or (field == "cbn" and res >= 256 and args.skip_dense_cbn_256):
                dense = "skip"
            else:
                dense = "warm_chunk" if field == "cbn" else "warm_run"
            rows.append(
                run_case(
                    args,
                    f"{field} {res}^3",
                    res,
                    fn,
                    batched_fn,
                    codes,
                    fn_for_code,
                    refine_fn,
                    refine_steps if res == args.resolutions[0] else 0,
                    repeats,
                    dense,
                )
            )

    if mc_rows:
        print("\n== marching cubes on the sphere (seconds) ==")
        print(f"{'grid':<8} {'PyMCubes':>9} {'JAX':>9} {'ratio':>7}")
        for r in mc_rows:
            ratio = r["pymcubes"] / r["jax"]
            print(f"{str(r['res']) + '^3':<8} {r['pymcubes']:9.4f} {r['jax']:9.4f} {ratio:6.2f}x")
    if not rows:
        return
    print("\n== summary (seconds per mesh) ==")
    print(
        f"{'case':<12} {'MISE':>9} {'surface':>9} {'+JAX MC':>9} {'dense':>9} {'dense/MISE':>10} "
        f"{'queries':>10} {'batched m/s':>12}"
    )

    def cell(r, key, fmt="9.3f"):
        return f"{r[key]:{fmt}}" if r.get(key) is not None else f"{'-':>9}"

    for r in rows:
        ratio = f"{r['dense'] / r['mise']:9.1f}x" if r["dense"] is not None else f"{'-':>10}"
        batched = f"{r['batched']:12.2f}" if "batched" in r else f"{'-':>12}"
        print(
            f"{r['case']:<12} {r['mise']:9.3f} {cell(r, 'surface')} {cell(r, 'fast')} {cell(r, 'dense')} "
            f"{ratio} {r['queries']:>10,} {batched}"
        )
    print_targets(rows, jax.devices()[0].platform)


def print_targets(rows, platform):
    """The issue's targets, checked against this run's figures (where it measured them)."""
    by_case = {r["case"]: r for r in rows}
    cbn128, cbn256 = by_case.get("cbn 128^3"), by_case.get("cbn 256^3")
    lines = []

    def check(name, value, limit, unit="s", scale=1.0):
        verdict = "met" if value < limit else "NOT met"
        lines.append(f"  {name}: {value * scale:.3f} {unit} (target < {limit * scale:g} {unit}): {verdict}")

    if platform == "cpu":
        if cbn128:
            check("CBN 128^3 mesh, default settings", cbn128["mise"], 2.0)
            best = min(cbn128[k] for k in ("mise", "surface", "fast") if cbn128.get(k) is not None)
            check("CBN 128^3 mesh, fastest settings (aim)", best, 1.0)
            if cbn128.get("simplify_refine_first") is not None:
                steps = cbn128["simplify_refine_steps"]
                check(
                    f"simplify + {steps} first-order refinement steps, CBN 128^3",
                    cbn128["simplify_refine_first"],
                    3.0,
                )
        if cbn256 and cbn256["dense"] is not None:
            ratio = cbn256["dense"] / cbn256["mise"]
            lines.append(
                f"  CBN 256^3: dense / MISE = {ratio:.1f}x (target >= 5x): "
                f"{'met' if ratio >= 5 else 'NOT met'}"
            )
        elif cbn256:
            lines.append("  CBN 256^3: dense / MISE not measured (dense grid skipped; about 140 s per mesh)")
        sphere256 = by_case.get("sphere 256^3")
        if sphere256 and sphere256["dense"] is not None:  # the field costs nothing: no target there
            ratio = sphere256["dense"] / sphere256["mise"]
            lines.append(
                f"  sphere 256^3 (a free field, so this compares bookkeeping + marching cubes "
                f"with the dense grid's): dense / MISE = {ratio:.1f}x"
            )
    elif cbn128:  # GPU / TPU
        check("CBN 128^3, all network queries", cbn128["network"], 0.030, "ms", 1e3)
        if cbn128.get("fast") is not None:
            check("CBN 128^3 with JAX marching cubes, whole mesh", cbn128["fast"], 0.100, "ms", 1e3)
            check("CBN 128^3 network, surface subdivision", cbn128["fast_network"], 0.030, "ms", 1e3)
    if lines:
        print(f"\n== targets ({platform}) ==")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
