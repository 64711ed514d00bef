"""The ``deepclust`` command line.

    deepclust run INPUT --out DIR [--k K|auto] [--method NAME] [--encoder NAME]   (with report.html)
                  [--labels FILE]                              (few-labels: the method chosen by CV)
    deepclust report DIR
    deepclust merge RUN --k K [--out DIR]                                         (coarsen, no refit)
    deepclust cluster INPUT --method NAME --n-clusters K [--seed S] [--device D] --out DIR
                      [--labels FILE | --labels-column NAME] [--constraints FILE]
                      [--scheduler ADDRESS | --distributed]                             (k-means on Dask)
    deepclust datasets
    deepclust methods
    deepclust bench --methods A,B --datasets X,Y --seeds 0,1,2 --out FILE.jsonl
    deepclust table FILE.jsonl [FILE.jsonl ...]

Problems with the user's input print one line and exit with status 2; Ctrl-C exits with 130
and leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from deepclust import __version__
from deepclust.errors import DeepclustError


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``--param key=value`` pairs; values are read as JSON when they parse (numbers, booleans)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeepclustError(f"--param {item!r} is not of the form key=value")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"deepclust: error: {message} (see {self.prog} --help)\n")


def _seed(text: str) -> int:
    """An argparse type: a seed from 0 to 2**32 - 1."""
    from deepclust.validation import check_seed

    try:
        return check_seed(int(text))
    except (ValueError, DeepclustError) as exc:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {2**32 - 1}, got {text!r}") from exc


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on one line each, without the source line."""
    print(f"deepclust: warning: {message}", file=sys.stderr)


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [_seed(s) for s in _csv_list(text)]
    except argparse.ArgumentTypeError as exc:
        raise DeepclustError(f"--seeds must be whole numbers from 0 to {2**32 - 1} separated by commas, "
                             f"got {text!r}") from exc


def _on_dask(args: argparse.Namespace) -> bool:
    """Whether --scheduler, --distributed or $DEEPCLUST_DASK_SCHEDULER ask for a Dask run."""
    import os

    from deepclust.scale import SCHEDULER_ENV

    return bool(args.scheduler or args.distributed or os.environ.get(SCHEDULER_ENV))


def cmd_cluster_dask(args: argparse.Namespace) -> int:
    """``deepclust cluster … --scheduler ADDRESS | --distributed``: k-means on a Dask cluster."""
    from deepclust.scale import cluster_on_dask

    unsupported = [opt for opt, given in (("--encoder", args.encoder != "raw"), ("--noise", args.noise),
                                          ("--labels", args.labels), ("--labels-column", args.labels_column),
                                          ("--constraints", args.constraints), ("--text-column", args.text_column))
                   if given]
    if unsupported:
        raise DeepclustError(f"{', '.join(unsupported)} cannot be used with a Dask run (--scheduler/--distributed); "
                             "embed first with deepclust.scale.encode_on_dask")
    summary = cluster_on_dask(args.input, args.out, n_clusters=args.n_clusters, method=args.method, seed=args.seed,
                              device=args.device, params=_parse_params(args.param), data_dir=args.data_dir,
                              label_column=args.label_column, scheduler=args.scheduler,
                              distributed=args.distributed, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    dk = summary["dask"]
    print(f"kmeans (Dask) on {summary['dataset']} ({summary['n_samples']} samples in {summary['partitions']} "
          f"partitions, k={summary['n_clusters']}, {dk.get('n_workers', 'local')} workers at {dk['scheduler']}): "
          f"fit {summary['seconds']['fit']:.2f}s, {summary['n_iter']} iterations")
    _print_scores(summary["scores"])
    print(f"  label-free scores on a sample of {summary['score_sample']} rows; results written to {summary['out']}/ "
          "(assignments.csv, metrics.json, model/)")
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from deepclust import distributed
    from deepclust.output import check_out_dir, reserve_out_dir
    from deepclust.pipeline import run_clustering, write_outputs
    from deepclust.runtime import set_threads

    set_threads(args.threads)
    if _on_dask(args):
        return cmd_cluster_dask(args)
    read_kwargs = {k: v for k, v in (("label_column", args.label_column), ("text_column", args.text_column)) if v}
    inputs = (args.input, args.data_dir)

    def fit():
        return run_clustering(args.input, args.method, args.n_clusters, seed=args.seed, device=args.device,
                              encoder=args.encoder, params=_parse_params(args.param), data_dir=args.data_dir,
                              read_kwargs=read_kwargs, encoder_params=_parse_params(args.encoder_param),
                              cache=not args.no_cache, noise=args.noise, labels_file=args.labels,
                              labels_column=args.labels_column, constraints_file=args.constraints)

    with distributed.launched():  # torchrun: one process group; rank 0 alone locks, writes and prints
        if not distributed.is_main():
            check_out_dir(args.out, args.overwrite, inputs)  # a bad --out stops every rank alike
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit()
            return 0
        with reserve_out_dir(args.out, args.overwrite, inputs) as out:  # checked and locked before any work
            result = fit()
            out = write_outputs(result, out, overwrite=args.overwrite, inputs=inputs)
    summary = result.summary()
    if args.json:
        print(json.dumps({**summary, "out": str(out)}, indent=2))
        return 0
    s = summary["scores"]
    found = "" if summary["n_clusters_found"] == summary["n_clusters"] else f", {summary['n_clusters_found']} found"
    print(f"{summary['method']} on {summary['dataset']} ({summary['n_samples']} samples, "
          f"k={summary['n_clusters']}{found}, {summary['device_name']}): fit {summary['seconds']['fit']:.2f}s")
    enc = summary.get("encoder_info") or {}
    if enc.get("name") not in (None, "raw"):
        print(f"  encoder {enc['name']} ({enc.get('dim')}-d, {'from the cache' if enc.get('cached') else 'computed'} "
              f"in {summary['seconds']['features']:.2f}s)")
    _print_clusters_found(summary)
    if summary.get("supervision"):
        sup = summary["supervision"]
        given = [f"{sup['n_labelled']} labels ({sup['n_classes_labelled']} classes)"] if sup["n_labelled"] else []
        given += [f"{sup[f'n_{kind}_link']} {kind}-link pairs" for kind in ("must", "cannot") if sup[f"n_{kind}_link"]]
        print(f"  given {', '.join(given)}; scores on the {sup['n_scored']} other samples")
    _print_scores(s)
    print(f"  results written to {out}/ (assignments.csv, metrics.json, model/)")
    return 0


def _print_clusters_found(summary: dict) -> None:
    """How many of the k clusters received samples (run_clustering warns when some stayed empty)."""
    print(f"  {summary['n_clusters_found']} of {summary['n_clusters']} clusters non-empty")


def _print_scores(s: dict) -> None:
    """The external scores (when labels are known) and the label-free ones, two lines; an
    undefined score (null in metrics.json, e.g. silhouette of one cluster) prints as "–"."""
    def f(key: str) -> str:
        return "–" if s.get(key) is None else f"{s[key]:.4f}"

    if "acc" in s:
        print(f"  ACC {f('acc')}  NMI {f('nmi')}  ARI {f('ari')}  AMI {f('ami')}")
    print(f"  silhouette {f('silhouette')}  Davies-Bouldin {f('davies_bouldin')}  "
          f"cluster-size entropy {f('size_entropy')}")


def cmd_run(args: argparse.Namespace) -> int:
    from deepclust.run import run
    from deepclust.runtime import set_threads

    if args.scheduler or args.distributed:
        raise DeepclustError("deepclust run compares pipelines in one process and does not run on Dask; for data "
                             "beyond one machine use: deepclust cluster INPUT --method kmeans -k K --distributed "
                             "(or --scheduler ADDRESS)")
    set_threads(args.threads)
    read_kwargs = {k: v for k, v in (("label_column", args.label_column), ("text_column", args.text_column)) if v}
    echo = None if (args.json or args.quiet) else (lambda msg: print(msg, flush=True))
    res = run(args.input, args.out, k=args.k, method=args.method, encoder=args.encoder, seed=args.seed,
              device=args.device, overwrite=args.overwrite, data_dir=args.data_dir, read_kwargs=read_kwargs,
              params=_parse_params(args.param), budget_s=args.budget, noise=args.noise, labels=args.labels, echo=echo)
    summary = res.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    s = summary["scores"]
    sec = summary["seconds"]
    if not args.quiet:
        print(f"{summary['method']} on {summary['dataset']}: k={summary['n_clusters']}, "
              f"{summary['n_clusters_found']} clusters found ({summary['device_name']}); "
              f"fit {sec['fit']:.2f}s" + (f", choosing k {sec['select_k']:.1f}s" if "select_k" in sec else "")
              + f", report {sec['report']:.1f}s")
        _print_scores(s)
    print(f"report: {summary['report']}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from deepclust.merge import merge_run

    res = merge_run(args.run, args.k, args.out)
    if args.json:
        print(json.dumps({**res.summary, "out": str(res.out)}, indent=2))
        return 0
    groups: dict[int, list[int]] = {}
    for old, new in res.mapping.items():
        groups.setdefault(new, []).append(old)
    print(f"merged {res.k_from} clusters into {res.k} (Ward merge tree, no refit): "
          + "; ".join(f"{new} = {'+'.join(map(str, olds))}" for new, olds in sorted(groups.items())))
    print(f"written to {res.out}/ (assignments.csv, metrics.json, merge.json"
          + (", report.html)" if (res.out / "report.html").is_file() else ")"))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from deepclust.report import rebuild_report

    print(f"report: {rebuild_report(args.run_dir)}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from deepclust.data import list_datasets

    infos = list_datasets(args.data_dir)
    width = max(len(i.name) for i in infos)
    for i in infos:
        where = i.location if i.available else "missing (downloads on first use where a network is available)"
        print(f"{i.name:<{width}}  {i.modality:<5}  {i.n_samples:>6} samples  {str(i.n_classes or '-'):>3} classes  "
              f"{'present' if i.available else 'absent '}  {i.description}  [{where}]")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from deepclust.methods import METHODS

    width = max(len(n) for n in METHODS)
    for name, info in sorted(METHODS.items()):
        print(f"{name:<{width}}  {info.description}  ({info.reference})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from deepclust.bench import format_table, run_benchmark, summarize

    records = run_benchmark(_csv_list(args.methods), _csv_list(args.datasets), _seeds(args.seeds), args.out,
                            device=args.device, encoder=args.encoder, params=_parse_params(args.param),
                            threads=args.threads, data_dir=args.data_dir, echo=lambda msg: print(msg, flush=True),
                            encoder_params=_parse_params(args.encoder_param), cache=not args.no_cache)
    print(format_table(summarize(records)))
    print(f"records appended to {args.out}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from deepclust.bench import format_table, read_records, summarize

    print(format_table(summarize(read_records(args.files))))
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``kill``, a job scheduler's stop) like Ctrl-C, so that the same clean-up runs:
    the hidden folder of a half-written run is removed and a run it was replacing stays in place."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    from deepclust.run import encoder_help

    parser = _Parser(prog="deepclust", description="Deep clustering toolkit.")
    parser.add_argument("--version", action="version", version=f"deepclust {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
        p.add_argument("--encoder", default="raw",
                       help="raw (default; texts: tfidf), tfidf, minilm, efficientnet-lite0, pretext, or a local "
                            "model: a sentence-transformers folder, a timm folder or ARCH:WEIGHTS_FILE")
        p.add_argument("--encoder-param", action="append", default=[], metavar="KEY=VALUE",
                       help="an encoder setting, e.g. --encoder-param epochs=20 for pretext (repeatable)")
        p.add_argument("--no-cache", action="store_true",
                       help="recompute embeddings instead of reading the cache ($DEEPCLUST_CACHE)")
        p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a method hyper-parameter, e.g. --param schedule=paper (repeatable)")
        p.add_argument("--data-dir", default=None, help="data folder (default: $DEEPCLUST_DATA or the user cache)")
        threads(p)

    def noise(p: argparse.ArgumentParser) -> None:
        p.add_argument("--noise", action="store_true",
                       help="leave points that belong to no cluster unassigned (-1): HDBSCAN's own noise, else "
                            "points far from their cluster's centre (median + 3 MAD; see deepclust.noise)")

    def dask_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="k-means on this Dask scheduler, e.g. tcp://host:8786 (default: "
                            "$DEEPCLUST_DASK_SCHEDULER); the data (.npy, Parquet folder) are read by the workers")
        p.add_argument("--distributed", action="store_true",
                       help="k-means on Dask on a LocalCluster of this machine (bounded memory)")

    def threads(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="torch CPU threads (default: $OMP_NUM_THREADS, else the free cores: cores minus the "
                            "1-minute load average, at least 1)")

    p = sub.add_parser("cluster", help="cluster a built-in dataset or a file/folder")
    p.add_argument("input", help="a built-in dataset name (see `deepclust datasets`) or a path")
    p.add_argument("--method", default="kmeans", help="see `deepclust methods` (default: kmeans)")
    p.add_argument("--n-clusters", "-k", type=int, default=None,
                   help="number of clusters (default: the number of classes of a labelled built-in dataset; "
                        "ignored by hdbscan, which finds it)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    p.add_argument("--label-column", default=None, help="tables/text files: the column holding known labels")
    p.add_argument("--text-column", default=None, help="text tables: the column holding the documents")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    noise(p)
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="partial labels for few-labels, seeded-kmeans, constrained-kmeans, transductive-fewshot, "
                        "tim, umap-spreading, cluster-then-label …: a CSV of index,label rows, or one column with a "
                        "row per sample (empty = unlabelled)")
    p.add_argument("--labels-column", default=None, metavar="NAME",
                   help="tables: a column of partial labels (empty cells = unlabelled; not used as a feature)")
    p.add_argument("--constraints", default=None, metavar="FILE",
                   help="pairwise constraints for cop-kmeans / pckmeans: a CSV of i,j,must or i,j,cannot rows")
    dask_options(p)
    common(p)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("run", help="cluster and explain: chooses encoder, method and k; writes report.html")
    p.add_argument("input", help="a built-in dataset name, an image folder, a text/table file or a .npy/.npz array")
    p.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    p.add_argument("--k", "-k", default="auto", help="number of clusters, or 'auto' (default) to choose it without labels")
    p.add_argument("--method", default=None,
                   help="see `deepclust methods` (default: the best of k-means, UMAP + k-means, UMAP + GMM and Ward "
                        "by a label-free score; DEPICT for images on a GPU)")
    p.add_argument("--budget", type=_positive_float, default=300.0, metavar="SECONDS",
                   help="time after which the pipeline comparison starts no further candidate (default 300)")
    p.add_argument("--encoder", default=None, help=encoder_help())
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or notes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--label-column", default=None, help="tables/text files: the column holding known labels")
    p.add_argument("--text-column", default=None, help="text tables: the column holding the documents")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a method hyper-parameter")
    p.add_argument("--data-dir", default=None, help="data folder (default: $DEEPCLUST_DATA or the user cache)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="partial labels (a CSV of index,label rows, or one column with a row per sample, empty = "
                        "unlabelled): fits few-labels, the semi-supervised method chosen by cross-validation on "
                        "them, with k = the number of labelled classes unless --k is given")
    noise(p)
    threads(p)
    dask_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("merge", help="coarsen a finished run to fewer clusters along its merge tree (no refit)")
    p.add_argument("run", help="the --out folder of `deepclust run` or `deepclust cluster`")
    p.add_argument("--k", "-k", type=int, required=True, help="the number of clusters to merge into (2 … k-1)")
    p.add_argument("--out", default=None, help="a new folder (default: RUN-merged-kK beside the run)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("report", help="rebuild report.html of a finished `deepclust run` (no re-clustering)")
    p.add_argument("run_dir", help="the --out folder of `deepclust run`")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("datasets", help="list the built-in datasets and whether each is present locally")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("methods", help="list the clustering methods")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("bench", help="run methods × datasets × seeds and append JSON records")
    p.add_argument("--methods", required=True, help="comma-separated method names")
    p.add_argument("--datasets", required=True, help="comma-separated built-in dataset names or paths")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default 0,1,2,3,4)")
    p.add_argument("--out", required=True, help="JSONL file to append records to")
    common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("table", help="print the mean ± std table of benchmark JSONL files")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_table)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error (exit 2)
        return int(exc.code or 0)
    from deepclust.distributed import launched_by_torchrun
    from deepclust.progress import set_quiet

    if launched_by_torchrun() and args.command != "cluster":
        print(f"deepclust: error: only `deepclust cluster` runs under torchrun, not `deepclust {args.command}`",
              file=sys.stderr)
        return 2
    set_quiet(args.quiet or int(os.environ.get("RANK", "0")) > 0)  # torchrun: rank 0's progress only
    try:
        with _sigterm_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except DeepclustError as exc:
        print(f"deepclust: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as exc:
        print(f"deepclust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepclust: interrupted; finished records are kept, nothing half-written was left", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
