"""Captioning metrics of the COCO caption toolkit (pycocoevalcap 1.2), offline and fast.

What every region-captioning paper reports: captions and references are lower-cased and
tokenised by the Stanford PTB tokenizer (punctuation tokens dropped), then scored by METEOR 1.5
(Java) and CIDEr-D (pycocoevalcap's ``Cider``); BLEU-4 and ROUGE-L come along as extras.
Everything is on the papers' scale (x100: METEOR 16.6, CIDEr 108.3).

Why not ``COCOEvalCap.evaluate()``: it always builds SPICE, which downloads Stanford CoreNLP
and fails offline. The scorers are called directly instead, with the same jars, arguments
and protocol, so the numbers are pycocoevalcap's to the last digit (tests check parity):

* PTB tokenizer: pycocoevalcap writes its input file *beside the jar* (site-packages), which
  fails when site-packages is read-only; here the file goes to a private temporary folder and
  the jar is referenced by absolute path. References and predictions share one JVM.
* METEOR: the same ``meteor-1.5.jar - - -stdio -l en -norm`` process and line protocol. One
  JVM per scoring call, started first so that loading its paraphrase table (most of its
  time) overlaps the tokenizer and the Python metrics; all ``SCORE`` lines are written from a
  thread while the answers are read, instead of one round trip per caption (same output).
* Characters Java treats as line breaks (``\\r``, ``\\v``, ``\\f``, U+2028, U+2029) would shift
  every later caption onto the wrong image in pycocoevalcap (it only replaces ``\\n``); they
  become spaces here, and :func:`score_captions` reports how many captions had them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from evalkit.errors import EvalkitError
from evalkit.metrics.spec import MetricSpec, declare

declare(
    MetricSpec("meteor", "METEOR", True, "caption"),
    MetricSpec("cider", "CIDEr", True, "caption_cider"),  # ×100; can pass 100
    MetricSpec("bleu4", "BLEU-4", True, "caption"),
    MetricSpec("rouge_l", "ROUGE-L", True, "caption"),
    MetricSpec("spice", "SPICE", True, "caption"),
)

PTB_JAR = "stanford-corenlp-3.4.1.jar"
METEOR_JAR = "meteor-1.5.jar"
# pycocoevalcap's tokenizer drops these tokens after tokenising.
PUNCTUATIONS = frozenset(
    [
        "''",
        "'",
        "``",
        "`",
        "-LRB-",
        "-RRB-",
        "-LCB-",
        "-RCB-",
        ".",
        "?",
        "!",
        ",",
        ":",
        "-",
        "--",
        "...",
        ";",
    ]
)
# Characters the Java tokenizer ends a line at, besides "\n" (checked against the jar).
JAVA_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\u2028", "\u2029")
METRICS = ("meteor", "cider", "bleu4", "rouge_l")


class JavaNotFoundError(EvalkitError):
    """METEOR and the PTB tokenizer run on Java; none was found."""


class CaptionScorerError(EvalkitError):
    """A Java scorer died or answered something unexpected."""


@dataclass
class CaptionScores:
    corpus: dict[str, float]  # metric -> corpus score x100 (METEOR/CIDEr/BLEU as the toolkit defines)
    per_item: dict[str, dict[str, float]]  # item id -> metric -> score x100
    tokenized_predictions: dict[str, str] = field(default_factory=dict)
    line_breaks_replaced: int = 0  # captions that held a Java line-break character


# ---------------------------------------------------------------------- Java helpers
def java_executable() -> str:
    """The ``java`` binary: ``$JAVA_HOME/bin/java`` or the first on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found:
        return found
    raise JavaNotFoundError(
        "caption metrics need Java >= 8 (METEOR 1.5 and the Stanford PTB tokenizer are Java "
        "programs) and no `java` was found on PATH or in $JAVA_HOME; install one, e.g. "
        "`apt-get install default-jre-headless` or `conda install openjdk`"
    )


def _package_file(subpackage: str, name: str) -> Path:
    try:
        import importlib

        module = importlib.import_module(f"pycocoevalcap.{subpackage}")
    except ModuleNotFoundError as exc:
        raise EvalkitError("caption metrics need pycocoevalcap (`pip install pycocoevalcap`)") from exc
    path = Path(next(iter(module.__path__))) / name
    if not path.is_file():
        raise EvalkitError(f"pycocoevalcap is installed but {path} is missing")
    return path


def ptb_jar() -> Path:
    return _package_file("tokenizer", PTB_JAR)


def meteor_jar() -> Path:
    return _package_file("meteor", METEOR_JAR)


def _tail(stream: IO[bytes]) -> str:
    try:
        stream.seek(0)
        return stream.read().decode("utf-8", "replace")[-800:]
    except (OSError, ValueError):
        return ""


# ---------------------------------------------------------------------- PTB tokenizer
def clean_line_breaks(text: str) -> tuple[str, bool]:
    """pycocoevalcap's ``replace('\\n', ' ')`` plus the other breaks Java honours."""
    out = text.replace("\n", " ")
    changed = False
    for ch in JAVA_LINE_BREAKS:
        if ch in out:
            out = out.replace(ch, " ")
            changed = True
    return out, changed


def ptb_tokenize(captions: Sequence[str], jar: Path | None = None) -> list[str]:
    """Tokenise captions as pycocoevalcap's ``PTBTokenizer`` does, in one JVM.

    Lower-cased PTB tokens joined by single spaces, punctuation tokens dropped. Nothing is
    written next to the jar, so a read-only site-packages works.
    """
    if not captions:
        return []
    jar = (jar or ptb_jar()).resolve()
    java = java_executable()
    lines = [clean_line_breaks(c)[0] for c in captions]
    with tempfile.TemporaryDirectory(prefix="evalkit-ptb-") as tmp:
        source = Path(tmp) / "captions.txt"
        source.write_bytes("\n".join(lines).encode("utf-8"))
        cmd = [
            java,
            "-cp",
            str(jar),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            source.name,
        ]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, check=False)
    if proc.returncode != 0:
        raise CaptionScorerError(
            f"PTB tokenizer failed (exit {proc.returncode}): " + proc.stderr.decode("utf-8", "replace")[-800:]
        )
    out_lines = proc.stdout.decode("utf-8").split("\n")
    if len(out_lines) < len(lines):
        raise CaptionScorerError(f"PTB tokenizer returned {len(out_lines)} lines for {len(lines)} captions")
    return [
        " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
        for line in out_lines[: len(lines)]
    ]


# ---------------------------------------------------------------------- METEOR
def _score_line(hypothesis: str, references: Sequence[str]) -> str:
    # Exactly pycocoevalcap's Meteor._stat formatting.
    hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(references), hypothesis))


class MeteorProcess:
    """One METEOR 1.5 JVM (``-stdio -l en -norm``, as pycocoevalcap runs it).

    Started on construction so it can load its paraphrase table (seconds) while the caller
    tokenises and computes the other metrics.
    """

    def __init__(self, jar: Path | None = None) -> None:
        jar = (jar or meteor_jar()).resolve()
        cmd = [
            java_executable(),
            "-jar",
            "-Xmx2G",
            str(jar),
            "-",
            "-",
            "-stdio",
            "-l",
            "en",
            "-norm",
        ]
        # stderr goes to a file: an unread pipe could fill up and block the JVM.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(jar.parent),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )

    def __enter__(self) -> MeteorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_line(self, what: str) -> str:
        assert self.proc.stdout is not None
        raw = self.proc.stdout.readline()
        if not raw:
            self.proc.kill()
            raise CaptionScorerError(
                f"METEOR stopped before sending {what} (exit {self.proc.wait()}): " + _tail(self.stderr)
            )
        return raw.decode("utf-8").strip()

    def score(
        self, references: Sequence[Sequence[str]], hypotheses: Sequence[str]
    ) -> tuple[float, list[float]]:
        """Corpus score and per-item scores (0..1) of tokenised hypotheses."""
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
        if not hypotheses:
            return 0.0, []
        stdin = self.proc.stdin
        assert stdin is not None

        def feed() -> None:
            try:
                for hyp, refs in zip(hypotheses, references, strict=True):
                    stdin.write((_score_line(hyp, refs) + "\n").encode("utf-8"))
                stdin.flush()
            except (OSError, ValueError):
                pass  # the JVM died; the reader reports it with its stderr

        # All SCORE lines go in from a thread while the statistics are read back (pycocoevalcap
        # waits for each answer before sending the next line; the output is the same).
        writer = threading.Thread(target=feed, name="meteor-feed", daemon=True)
        writer.start()
        stats = [self._read_line(f"the statistics of item {k}") for k in range(len(hypotheses))]
        writer.join()
        stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode("utf-8"))
        stdin.flush()
        try:
            per_item = [float(self._read_line(f"the score of item {k}")) for k in range(len(hypotheses))]
            corpus = float(self._read_line("the corpus score"))
        except ValueError as exc:
            raise CaptionScorerError(f"METEOR answered something that is not a number: {exc}") from exc
        return corpus, per_item

    def close(self) -> None:
        proc = self.proc
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.stderr.close()


def meteor_scores(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], jar: Path | None = None
) -> tuple[float, list[float]]:
    """METEOR 1.5 corpus score and per-item scores (0..1), one JVM for all items."""
    if not hypotheses:
        return 0.0, []
    with MeteorProcess(jar) as meteor:
        return meteor.score(references, hypotheses)


# ---------------------------------------------------------------------- all metrics
def score_captions(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    metrics: Sequence[str] = METRICS,
) -> CaptionScores:
    """Score one caption per item against that item's references (both raw text).

    ``metrics`` picks from ``meteor``, ``cider`` (CIDEr-D), ``bleu4``, ``rouge_l``. Returns
    corpus and per-item scores x100. Two JVMs in all: the tokenizer and METEOR.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown caption metrics {sorted(unknown)}; known: {METRICS}")
    if set(references) != set(predictions):
        missing = sorted(set(references) ^ set(predictions))[:5]
        raise ValueError(f"references and predictions cover different items, e.g. {missing}")
    ids = list(predictions)
    for key in ids:
        if not references[key]:
            raise ValueError(f"item {key!r} has no reference caption")
    if not ids:
        return CaptionScores({m: 0.0 for m in metrics}, {})

    # METEOR's JVM loads its paraphrase table while the tokenizer and the Python metrics run.
    meteor = MeteorProcess() if "meteor" in metrics else None
    try:
        texts: list[str] = [predictions[k] for k in ids]
        for key in ids:
            texts.extend(references[key])
        broken = sum(1 for t in texts if clean_line_breaks(t)[1])
        tokens = ptb_tokenize(texts)
        res = {k: [tokens[i]] for i, k in enumerate(ids)}
        gts: dict[str, list[str]] = {}
        pos = len(ids)
        for key in ids:
            n = len(references[key])
            gts[key] = tokens[pos : pos + n]
            pos += n

        corpus: dict[str, float] = {}
        per_item: dict[str, dict[str, float]] = {k: {} for k in ids}

        def put(name: str, total: float, items: Sequence[float]) -> None:
            corpus[name] = float(total) * 100
            for key, value in zip(ids, items, strict=True):
                per_item[key][name] = float(value) * 100

        if "cider" in metrics:
            from pycocoevalcap.cider.cider import Cider

            total_c, items_c = Cider().compute_score(gts, res)
            put("cider", total_c, list(items_c))
        if "bleu4" in metrics:
            from pycocoevalcap.bleu.bleu import Bleu

            totals, items_b = Bleu(4).compute_score(gts, res, verbose=0)
            put("bleu4", totals[3], items_b[3])
        if "rouge_l" in metrics:
            from pycocoevalcap.rouge.rouge import Rouge

            total_r, items_r = Rouge().compute_score(gts, res)
            put("rouge_l", total_r, list(items_r))
        if meteor is not None:
            total_m, items_m = meteor.score([gts[k] for k in ids], [res[k][0] for k in ids])
            put("meteor", total_m, items_m)
    finally:
        if meteor is not None:
            meteor.close()
    corpus = {name: corpus[name] for name in metrics}  # in the order asked for
    return CaptionScores(corpus, per_item, {k: res[k][0] for k in ids}, broken)
