"""Generates jaxdr/data/superclasses/imagenet2012.json: ImageNet's 1000 classes in 58 WordNet categories.

DMNN (Su et al.) groups the 1000 ILSVRC-2012 classes into 58 "big categories" using ImageNet's
WordNet hierarchy, without listing them. This script rebuilds such a grouping reproducibly from
WordNet 3.0 (Debian: ``apt-get install -y wordnet-base``) and the wnids in tfds's label order:

1. Each class (a noun synset) hangs under its *first* hypernym, giving a tree rooted at ``entity``.
2. Starting from one category (``entity``), repeatedly split the largest category into the child
   subtrees of its synset. Children holding fewer than ``--min_size`` classes are pooled into one
   ``other_<synset>`` category (never split further); a synset with a single populated child is
   passed through to that child.
3. Stop before a split would exceed ``--num_categories``; then split smaller categories whose split
   fits, largest first, until exactly ``--num_categories`` (58) or no split fits.

Every class lands in exactly one category. Usage:
    python scripts/make_imagenet_superclasses.py [--wordnet_dir=/usr/share/wordnet] [--out=...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, os.pardir, "jaxdr", "data", "superclasses", "imagenet2012.json")


def tfds_wnids() -> List[str]:
  """The 1000 ILSVRC-2012 wnids in tfds's label order (a file shipped inside tensorflow_datasets)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012", "labels.txt")
  with open(path) as f:
    wnids = [line.strip() for line in f if line.strip()]
  if len(wnids) != 1000:
    raise ValueError(f"{path}: expected 1000 wnids, found {len(wnids)}")
  return wnids


def read_nouns(wordnet_dir: str) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
  """WordNet noun synsets: (offset -> first lemma, offset -> hypernym offsets in file order)."""
  path = os.path.join(wordnet_dir, "data.noun")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found; install WordNet 3.0 with "
                            "`apt-get install -y wordnet-base` or pass --wordnet_dir")
  lemma, hypernyms = {}, {}
  with open(path, encoding="latin-1") as f:
    for line in f:
      if line.startswith("  "):  # licence header
        continue
      fields = line.split(" | ")[0].split()
      offset, w_cnt = fields[0], int(fields[3], 16)
      lemma[offset] = fields[4]
      p = 4 + 2 * w_cnt
      p_cnt = int(fields[p])
      pointers = [fields[p + 1 + 4 * i: p + 5 + 4 * i] for i in range(p_cnt)]
      hypernyms[offset] = [q[1] for q in pointers if q[0] in ("@", "@i") and q[2] == "n"]
  return lemma, hypernyms


def tree_paths(offsets: List[str], hypernyms: Dict[str, List[str]]) -> Dict[str, List[str]]:
  """Root-to-synset path of each offset following first hypernyms."""
  paths = {}
  for offset in offsets:
    path = [offset]
    while hypernyms[path[-1]]:
      path.append(hypernyms[path[-1]][0])
      if len(path) > 100:
        raise ValueError(f"hypernym cycle above {offset}")
    paths[offset] = path[::-1]
  return paths


class Category:
  """A synset and the classes (indices) under it; ``pooled`` categories are not split."""

  def __init__(self, synset: str, classes: List[int], pooled: bool = False):
    self.synset, self.classes, self.pooled = synset, sorted(classes), pooled


def split(cat: Category, paths: List[List[str]], min_size: int) -> Optional[List[Category]]:
  """The categories that replace ``cat`` when split, or None when it cannot be split."""
  if cat.pooled or len(cat.classes) < 2:
    return None
  synset = cat.synset
  while True:
    children: Dict[str, List[int]] = {}
    leftover = []
    for c in cat.classes:
      path = paths[c]
      depth = path.index(synset)
      if depth + 1 < len(path):
        children.setdefault(path[depth + 1], []).append(c)
      else:
        leftover.append(c)  # the class is this synset itself
    if len(children) == 1 and not leftover:
      synset = next(iter(children))  # pass through a single populated child
      continue
    break
  big = [Category(s, cs) for s, cs in children.items() if len(cs) >= min_size]
  small = leftover + [c for cs in children.values() if len(cs) < min_size for c in cs]
  if not big:
    return None
  out = big + ([Category(synset, small, pooled=True)] if small else [])
  return out if len(out) > 1 else None


def group(wnids: List[str], lemma, hypernyms, num_categories: int, min_size: int) -> List[Category]:
  offsets = [w[1:] for w in wnids]
  missing = [w for w, o in zip(wnids, offsets) if o not in lemma]
  if missing:
    raise ValueError(f"wnids not in WordNet 3.0 nouns: {missing[:5]}")
  by_offset = tree_paths(offsets, hypernyms)
  paths = [by_offset[o] for o in offsets]
  roots = {p[0] for p in paths}
  if len(roots) != 1:
    raise ValueError(f"classes have several roots: {sorted(roots)}")
  cats = [Category(roots.pop(), list(range(len(wnids))))]
  while len(cats) < num_categories:
    done = True
    for cat in sorted(cats, key=lambda c: -len(c.classes)):
      parts = split(cat, paths, min_size)
      if parts is None or len(cats) - 1 + len(parts) > num_categories:
        continue
      cats.remove(cat)
      cats.extend(parts)
      done = False
      break
    if done:
      break
  return sorted(cats, key=lambda c: min(c.classes))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--wordnet_dir", default="/usr/share/wordnet")
  parser.add_argument("--out", default=DEFAULT_OUT)
  parser.add_argument("--num_categories", type=int, default=58)
  parser.add_argument("--min_size", type=int, default=5)
  args = parser.parse_args(argv)
  try:
    wnids = tfds_wnids()
    lemma, hypernyms = read_nouns(args.wordnet_dir)
    cats = group(wnids, lemma, hypernyms, args.num_categories, args.min_size)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  names = [lemma[w[1:]].replace("_", " ") for w in wnids]
  result = {
      "dataset": "imagenet2012",
      "source": ("ILSVRC-2012 classes grouped by WordNet 3.0 hypernyms (first hypernym tree), "
                 "generated by scripts/make_imagenet_superclasses.py "
                 f"--num_categories={args.num_categories} --min_size={args.min_size}"),
      "classes": [{"wnid": w, "name": n} for w, n in zip(wnids, names)],
      "superclasses": [{
          "name": ("other_" if c.pooled else "") + lemma[c.synset],
          "wnid": "n" + c.synset,
          "classes": c.classes,
      } for c in cats],
  }
  seen = sorted(i for s in result["superclasses"] for i in s["classes"])
  assert seen == list(range(len(wnids))), "every class must be in exactly one category"
  with open(args.out, "w") as f:
    json.dump(result, f, indent=None, separators=(",", ":"))
    f.write("\n")
  sizes = sorted((len(s["classes"]), s["name"]) for s in result["superclasses"])
  print(f"wrote {args.out}: {len(cats)} categories; sizes {sizes[0][0]}..{sizes[-1][0]}")
  for size, name in sizes[::-1]:
    print(f"  {size:4d} {name}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
