#!/usr/bin/env python3
"""Make the kernel's rust-project.json cover this repository.

`make -C $KBUILD M=$TOP rust-analyzer` describes the kernel's crates (core,
kernel, macros, bindings, ...) but finds no crate of ours: its generator
takes a file as a crate root only if a Kbuild or Makefile in the file's own
directory names it, and ours are all named by the top-level Kbuild. And the
kernel crate's `dma_buf` module is the overlay's copy in the kernel tree,
not the file a person edits in rust/kernel/dma_buf/.

So this script, given that rust-project.json:
- adds a crate for each Rust object in ./Kbuild (obj-m += dir/name.o with
  dir/name.rs), depending on what the kernel's own samples depend on;
- gives the kernel crate a root of its own in OUTDIR: the tree's
  rust/kernel/lib.rs with an absolute #[path] on every `mod NAME;` line, the
  tree's files for every module but `dma_buf`, this repository's for
  `dma_buf`; the crate's source roots gain rust/kernel/ of this repository.

Usage: rust-analyzer.py TOP TREE OUTDIR  (rewrites TOP/rust-project.json)
"""

import json
import os
import re
import sys

OURS = {'dma_buf'}
MOD = re.compile(r'^(\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;)', re.M)


def module_file(base, name):
    """rustc's file for `mod name;` declared in base/lib.rs."""
    for cand in (os.path.join(base, name + '.rs'), os.path.join(base, name, 'mod.rs')):
        if os.path.isfile(cand):
            return cand
    return None


def shadow_lib(lib, ours, out):
    """lib.rs with every module at an absolute path; ours from `ours`."""
    base = os.path.dirname(lib)
    missing = []

    def repl(m):
        name = m.group(2)
        path = module_file(ours if name in OURS else base, name)
        if path is None:
            missing.append(name)
            return m.group(1)
        return f'#[path = "{path}"]\n{m.group(1)}'

    text = MOD.sub(repl, open(lib).read())
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        f.write(text)
    return missing


def kbuild_crates(top):
    """Rust crate roots named by obj-m lines of TOP/Kbuild."""
    roots = []
    for line in open(os.path.join(top, 'Kbuild')):
        m = re.match(r'\s*obj-m\s*[:+]?=\s*(\S+)\.o\s*$', line)
        if m and os.path.isfile(os.path.join(top, m.group(1) + '.rs')):
            roots.append(os.path.join(top, m.group(1) + '.rs'))
    return roots


def main():
    top, tree, outdir = (os.path.abspath(a) for a in sys.argv[1:4])
    pj_path = os.path.join(top, 'rust-project.json')
    pj = json.load(open(pj_path))
    crates = pj['crates']
    index = {c['display_name']: i for i, c in enumerate(crates)}
    for need in ('core', 'kernel'):
        if need not in index:
            sys.exit(f'{pj_path}: no crate {need}: was it made by the kernel\'s rust-analyzer target?')

    kernel = crates[index['kernel']]
    lib = os.path.join(tree, 'rust', 'kernel', 'lib.rs')
    ours = os.path.join(top, 'rust', 'kernel')
    shadow = os.path.join(outdir, 'kernel', 'lib.rs')
    missing = shadow_lib(lib, ours, shadow)
    if missing:
        sys.exit(f'{lib}: no file for mod {", ".join(missing)}')
    kernel['root_module'] = shadow
    src = kernel.setdefault('source', {'include_dirs': [], 'exclude_dirs': []})
    src['include_dirs'] = [os.path.dirname(shadow), ours] + src['include_dirs']

    # Our crates depend on what the kernel's own driver crates do.
    deps = [{'crate': index[n], 'name': n}
            for n in ('core', 'kernel', 'pin_init', 'zerocopy', 'zerocopy_derive')
            if n in index]
    cfg = kernel.get('cfg', [])
    env = kernel.get('env', {})
    for root in kbuild_crates(top):
        name = os.path.splitext(os.path.basename(root))[0]
        if name in index:
            continue
        index[name] = len(crates)
        crates.append({
            'display_name': name,
            'root_module': root,
            'is_workspace_member': True,
            'deps': deps,
            'cfg': cfg,
            'edition': kernel.get('edition', '2021'),
            'env': env,
        })
    with open(pj_path, 'w') as f:
        json.dump(pj, f, sort_keys=True, indent=4)
        f.write('\n')
    print(f'{pj_path}: {len(crates)} crates; kernel::dma_buf from {ours}; '
          f'ours: {", ".join(os.path.basename(r) for r in kbuild_crates(top))}')


if __name__ == '__main__':
    main()
