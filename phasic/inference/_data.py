"""Observed site frequency spectra: arrays, dadi/moments ``.fs`` files, tskit tree sequences and
VCF/BCF files with a population map; folding and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phasic.exceptions import ParameterError


def read_fs(path):
    """A dadi/moments ``.fs`` file: ``(counts, mask, folded)``.

    The format: comment lines start with ``#``; then a line with the dimensions (``n_1 + 1``
    ...), optionally followed by ``folded`` or ``unfolded``; a line of the entries in C order;
    optionally a line of 0/1 mask flags (1 = masked).
    """
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"SFS file {str(path)!r} not found")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise ParameterError(f"SFS file {str(path)!r} is not a text file (a dadi/moments .fs file is)") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) < 2:
        raise ParameterError(f"SFS file {str(path)!r} has no dimensions line and data line")
    head = lines[0].split()
    folded = "folded" in head and "unfolded" not in head
    try:
        dims = tuple(int(x) for x in head if x not in ("folded", "unfolded"))
        data = np.array([float(x) for x in lines[1].split()])
    except ValueError as exc:
        raise ParameterError(f"SFS file {str(path)!r} is malformed: {exc}") from None
    if any(n < 1 for n in dims):
        raise ParameterError(f"SFS file {str(path)!r}: the dimensions {dims} must be positive")
    if not dims or data.size != int(np.prod(dims)):
        raise ParameterError(f"SFS file {str(path)!r}: {data.size} entries do not fill dimensions {dims}")
    mask = np.zeros(dims, bool)
    if len(lines) > 2:
        flags = lines[2].split()
        bad = [x for x in flags if x not in ("0", "1")]
        if bad:
            raise ParameterError(f"SFS file {str(path)!r}: the mask line has {bad[0]!r}; its flags are 0 or 1")
        flags = np.array([int(x) for x in flags])
        if flags.size != data.size:
            raise ParameterError(f"SFS file {str(path)!r}: the mask has {flags.size} entries, the data {data.size}")
        mask = flags.reshape(dims).astype(bool)
    return data.reshape(dims), mask, folded


def sfs_from_trees(ts, samples):
    """The polarised site SFS of a tskit tree sequence (or a ``.trees`` path), with one sample
    set per deme of `samples` (in its order): the sample nodes of the population of that name,
    whose number must match."""
    import tskit

    if isinstance(ts, (str, Path)):
        try:
            ts = tskit.load(str(ts))
        except (OSError, tskit.FileFormatError) as exc:
            raise ParameterError(f"cannot read the tree sequence {str(ts)!r}: {exc}") from None
    names = {
        pop.id: (pop.metadata or {}).get("name") if isinstance(pop.metadata, dict) else None for pop in ts.populations()
    }
    sets = []
    for deme, n in samples.items():
        ids = [k for k, v in names.items() if v == deme]
        if not ids:
            raise ParameterError(
                f"the tree sequence has no population named {deme!r} (names: {sorted(v for v in names.values() if v)})"
            )
        nodes = ts.samples(population=ids[0])
        if len(nodes) != n:
            raise ParameterError(
                f"population {deme!r} has {len(nodes)} sample genomes in the tree sequence; samples says {n}"
            )
        sets.append(nodes)
    return ts.allele_frequency_spectrum(sample_sets=sets, mode="site", polarised=True, span_normalise=False)


VCF_SUFFIXES = (".vcf", ".vcf.gz", ".bcf")


def is_vcf(data):
    """Whether `data` names a VCF or BCF file (by its ending: ``.vcf``, ``.vcf.gz``, ``.bcf``)."""
    return isinstance(data, (str, Path)) and str(data).lower().endswith(VCF_SUFFIXES)


def read_popmap(popmap):
    """``{sample: deme}`` from a mapping or a two-column text file (``sample deme`` per line,
    separated by whitespace or tabs; blank lines and lines starting with ``#`` are skipped)."""
    if isinstance(popmap, dict):
        items = list(popmap.items())
        where = "popmap"
    elif isinstance(popmap, (str, Path)):
        p = Path(popmap)
        if not p.is_file():
            raise ParameterError(f"popmap file {str(popmap)!r} not found")
        items = []
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ParameterError(
                    f"popmap file {str(popmap)!r}, line {i}: {line.strip()!r} is not two columns 'sample deme'"
                )
            items.append(tuple(fields))
        where = f"popmap file {str(popmap)!r}"
    else:
        raise ParameterError(f"popmap must be a dict of sample -> deme or a file path, got {popmap!r}")
    out = {}
    for sample, deme in items:
        if not isinstance(sample, str) or not isinstance(deme, str):
            raise ParameterError(f"{where}: sample {sample!r} -> deme {deme!r}: both must be names (strings)")
        if out.get(sample, deme) != deme:
            raise ParameterError(f"{where} maps sample {sample!r} to both {out[sample]!r} and {deme!r}")
        out[sample] = deme
    if not out:
        raise ParameterError(f"{where} maps no samples")
    return out


def _biallelic_snp(ref, alt):
    """One single-character REF and ALT, neither missing, a star or a symbolic allele."""
    return len(alt) == 1 and len(ref) == 1 and len(alt[0]) == 1 and alt[0] not in (".", "*") and ref not in (".", "*")


def read_vcf(path, popmap, samples):
    """The joint unfolded SFS of a VCF or BCF file (read by cyvcf2), with ``{sample: deme}``
    from `popmap` (a mapping or a two-column file) and one axis per deme of `samples`, in its
    order: ``(counts, skipped)``.

    Only biallelic SNPs count (one single-character REF and ALT). The derived allele is ALT,
    unless INFO/AA names the ancestral allele (case-insensitive; the part before a ``|``):
    ALT ancestral makes REF the derived allele, and a site whose AA is neither REF nor ALT
    (``N``, ``.``, another base) is skipped. Genotypes of any ploidy count genome by genome; a
    site where any mapped sample has a missing allele is skipped (no projection to fewer
    genomes: the SFS keeps the sizes of `samples`). Samples of the file that the popmap does
    not name are ignored; FILTER and QUAL are not looked at (filter the file beforehand).

    `skipped` counts the records: ``records`` (all), ``used``, ``not_biallelic_snp``,
    ``missing_genotype``, ``ancestral_unknown``.
    """
    unsampled = [k for k, v in samples.items() if not v]
    samples = {k: v for k, v in samples.items() if v}
    if not samples:
        raise ParameterError(f"reading the VCF {str(path)!r} needs samples (haploid genomes per deme)")
    if popmap is None:
        raise ParameterError(
            f"the VCF {str(path)!r} needs a popmap (sample -> deme: a dict, or a file of 'sample deme' lines)"
        )
    mapping = read_popmap(popmap)
    demes = list(samples)
    for sample, deme in mapping.items():
        if deme in unsampled:
            raise ParameterError(
                f"popmap maps sample {sample!r} to deme {deme!r}, which has 0 genomes in samples; "
                "leave that sample out of the popmap"
            )
        if deme not in samples:
            raise ParameterError(
                f"popmap maps sample {sample!r} to deme {deme!r}, which is not in samples ({demes}); "
                "leave that sample out of the popmap"
            )
    for deme in demes:
        if deme not in mapping.values():
            raise ParameterError(f"popmap maps no sample to deme {deme!r} (samples says {samples[deme]} genomes)")
    if not Path(path).is_file():
        raise ParameterError(f"VCF file {str(path)!r} not found")
    try:
        from cyvcf2 import VCF
    except ImportError:
        raise ParameterError(f"reading the VCF {str(path)!r} needs cyvcf2 (pip install phasic[vcf])") from None
    try:
        vcf = VCF(str(path), gts012=False, lazy=True)
    except Exception as exc:  # cyvcf2 raises several kinds for a file htslib refuses
        raise ParameterError(f"cannot read the VCF {str(path)!r}: {exc}") from None
    try:
        in_file = set(vcf.samples)
        for sample in mapping:
            if sample not in in_file:
                raise ParameterError(
                    f"popmap names sample {sample!r}, which the VCF {str(path)!r} does not have "
                    f"({len(in_file)} samples, e.g. {sorted(in_file)[:5]})"
                )
        vcf.set_samples(list(mapping))
        # the deme (axis) of each sample, in the file's order of the subset
        axis = np.array([demes.index(mapping[s]) for s in vcf.samples])
        target = np.array([samples[d] for d in demes])
        counts = np.zeros(tuple(n + 1 for n in target))
        skipped = {"records": 0, "used": 0, "not_biallelic_snp": 0, "missing_genotype": 0, "ancestral_unknown": 0}
        for var in vcf:
            skipped["records"] += 1
            ref, alt = var.REF, var.ALT
            if not _biallelic_snp(ref, alt):
                skipped["not_biallelic_snp"] += 1
                continue
            flip = False
            aa = var.INFO.get("AA")
            if aa is not None:
                aa = str(aa).split("|")[0].strip().upper()
                if aa == alt[0].upper():
                    flip = True
                elif aa != ref.upper():
                    skipped["ancestral_unknown"] += 1
                    continue
            gt = var.genotype.array()[:, :-1]  # the last column is the phasing
            present = gt != -2  # -2 pads genotypes of lower ploidy
            if np.any(gt == -1):
                skipped["missing_genotype"] += 1
                continue
            genomes = np.bincount(axis, weights=present.sum(axis=1), minlength=len(demes)).astype(np.int64)
            if not np.array_equal(genomes, target):
                i = int(np.flatnonzero(genomes != target)[0])
                raise ParameterError(
                    f"the VCF {str(path)!r} has {genomes[i]} genomes of deme {demes[i]!r} at "
                    f"{var.CHROM}:{var.POS} (its popmap samples' ploidy); samples says {target[i]}"
                )
            derived = np.bincount(axis, weights=(gt == 1).sum(axis=1), minlength=len(demes)).astype(np.int64)
            if flip:
                derived = target - derived
            counts[tuple(derived)] += 1
            skipped["used"] += 1
    finally:
        vcf.close()
    return counts, skipped


def observed_sfs(data, shape=None, samples=None, popmap=None, *, skipped=None):
    """The observed SFS as the likelihoods read it: ``(counts, mask, folded)``.

    Parameters
    ----------
    data : array_like, str, pathlib.Path or tskit.TreeSequence
        SFS counts (an array or nested list), a dadi/moments ``.fs`` file (with its mask and
        folding), a tree sequence (object or ``.trees`` file) whose populations are named like
        the demes, or a VCF/BCF file (``.vcf``, ``.vcf.gz``, ``.bcf``) with `popmap` (see the
        notes).
    shape : tuple of int, optional
        The model's shape (``(n_1 + 1, ...)``), checked when given.
    samples : dict, optional
        Haploid genomes per deme, in the order of the SFS's axes (tree sequences and VCFs).
    popmap : dict or str, optional
        For a VCF: sample name -> deme, or a file of ``sample deme`` lines.
    skipped : dict, optional
        For a VCF: filled with the number of ``records`` read, those ``used``, and those
        skipped as ``not_biallelic_snp``, ``missing_genotype`` and ``ancestral_unknown``.

    Returns
    -------
    tuple
        ``(counts, mask, folded)``: the counts as floats, the masked cells (bool) and whether
        the data are folded (only a ``.fs`` file says so).

    Notes
    -----
    A VCF or BCF file is read with cyvcf2 (``pip install phasic[vcf]``) into the joint unfolded
    SFS of the samples the popmap names (others are ignored), one axis per deme of `samples`:

    - only biallelic SNPs count (one single-character REF and ALT);
    - the derived allele is ALT, unless INFO/AA names the ancestral allele (case-insensitive,
      the part before a ``|``): AA equal to ALT makes REF derived, and a site whose AA is
      neither REF nor ALT (``N``, ``.``, another base) is skipped;
    - genotypes of any ploidy count genome by genome, and the genomes of each deme must number
      what `samples` says;
    - a site where any mapped sample has a missing allele is skipped: there is no projection
      to fewer genomes, so a spectrum of the full sample size is a spectrum of the sites
      called in every sample;
    - FILTER and QUAL are not looked at: filter the file beforehand.
    """
    if popmap is not None and not is_vcf(data):
        raise ParameterError(f"popmap goes with VCF data (.vcf, .vcf.gz, .bcf); the data are {_short(data)}")
    if is_vcf(data):
        counts, stats = read_vcf(data, popmap, samples or {})
        if skipped is not None:
            skipped.update(stats)
        mask, folded = np.zeros(counts.shape, bool), False
    elif type(data).__name__ == "TreeSequence" or (isinstance(data, (str, Path)) and str(data).endswith(".trees")):
        counts, mask, folded = sfs_from_trees(data, samples or {}), None, False
        mask = np.zeros(counts.shape, bool)
    elif isinstance(data, (str, Path)):
        counts, mask, folded = read_fs(data)
    else:
        try:
            raw = np.asarray(data)
            if raw.dtype.kind not in "biuf":
                raise TypeError
            counts = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ParameterError(
                f"the observed SFS must be an array of counts (or a .fs, .trees or VCF file), got {_short(data)}"
            ) from None
        mask = np.zeros(counts.shape, bool)
        folded = False
    bad = ~np.isfinite(counts) | (counts < 0)
    if np.any(bad):
        cell = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ParameterError(
            f"the observed SFS has negative or non-finite entries: {float(counts[cell])!r} at cell {cell}"
            f"{' (and ' + str(int(bad.sum()) - 1) + ' more)' if bad.sum() > 1 else ''}"
        )
    if shape is not None and tuple(counts.shape) != tuple(shape):
        raise ParameterError(
            f"the observed SFS has shape {counts.shape}, the model's samples give {tuple(shape)} "
            "(n + 1 per sampled deme, in the order of `samples`)"
        )
    return counts, mask, folded


def _short(x):
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape}"
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


def corners_mask(shape):
    """Monomorphic cells: none and all of the samples derived."""
    m = np.zeros(shape, bool)
    m[(0,) * len(shape)] = True
    m[tuple(n - 1 for n in shape)] = True
    return m


def fold(a):
    """The folded spectrum: cell ``c`` plus cell ``n - c`` on the side with fewer derived
    copies in total (ties: kept once), the other side zero."""
    a = np.asarray(a, dtype=np.float64)
    shape = a.shape
    total = sum(shape) - len(shape)
    idx = np.indices(shape).sum(axis=0)
    flipped = a[tuple(slice(None, None, -1) for _ in shape)]
    out = np.where(idx < total / 2, a + flipped, 0.0)
    out = np.where(idx == total / 2, a, out)
    return out
