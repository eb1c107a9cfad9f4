#!/usr/bin/env python3
"""Tests for scripts/rust-analyzer.py on a fake kernel tree and repository."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rust-analyzer.py')
spec = importlib.util.spec_from_file_location('rust_analyzer', SCRIPT)
ra = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ra)


def write(path, text=''):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


class Fake(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='test-ra-')
        d = self.tmp.name
        self.tree, self.top, self.out = (os.path.join(d, x) for x in ('linux', 'repo', 'out'))
        k = os.path.join(self.tree, 'rust', 'kernel')
        write(os.path.join(k, 'lib.rs'),
              '//! pub mod not_a_module;\n#![no_std]\npub mod alloc;\n'
              '#[cfg(CONFIG_X)]\npub mod dma_buf;\nmod private;\npub(crate) mod inner;\n')
        write(os.path.join(k, 'alloc.rs'))
        write(os.path.join(k, 'dma_buf', 'mod.rs'), '// the overlay copy\n')
        write(os.path.join(k, 'private', 'mod.rs'))
        write(os.path.join(k, 'inner.rs'))
        write(os.path.join(self.top, 'rust', 'kernel', 'dma_buf', 'mod.rs'), '// ours\n')
        write(os.path.join(self.top, 'Kbuild'),
              'obj-m := src/dmabuf_memory.o\nobj-m += samples/c/dmabuf_import_sample.o\n'
              'obj-m += samples/rust/rust_dmabuf_exporter.o\n')
        write(os.path.join(self.top, 'src', 'dmabuf_memory.rs'))
        write(os.path.join(self.top, 'samples', 'c', 'dmabuf_import_sample.c'))
        write(os.path.join(self.top, 'samples', 'rust', 'rust_dmabuf_exporter.rs'))

    def tearDown(self):
        self.tmp.cleanup()

    def test_every_module_gets_an_absolute_path_and_dma_buf_is_ours(self):
        shadow = os.path.join(self.out, 'kernel', 'lib.rs')
        self.assertEqual(ra.shadow_lib(os.path.join(self.tree, 'rust', 'kernel', 'lib.rs'),
                                       os.path.join(self.top, 'rust', 'kernel'), shadow), [])
        text = open(shadow).read()
        k = os.path.join(self.tree, 'rust', 'kernel')
        self.assertIn(f'#[path = "{k}/alloc.rs"]\npub mod alloc;', text)
        self.assertIn(f'#[path = "{k}/private/mod.rs"]\nmod private;', text)
        self.assertIn(f'#[path = "{k}/inner.rs"]\npub(crate) mod inner;', text)
        ours = os.path.join(self.top, 'rust', 'kernel', 'dma_buf', 'mod.rs')
        self.assertIn(f'#[cfg(CONFIG_X)]\n#[path = "{ours}"]\npub mod dma_buf;', text)
        self.assertIn('//! pub mod not_a_module;\n', text)     # doc comments untouched

    def test_a_module_without_a_file_is_reported(self):
        write(os.path.join(self.tree, 'rust', 'kernel', 'lib.rs'), 'pub mod gone;\n')
        missing = ra.shadow_lib(os.path.join(self.tree, 'rust', 'kernel', 'lib.rs'),
                                os.path.join(self.top, 'rust', 'kernel'),
                                os.path.join(self.out, 'lib.rs'))
        self.assertEqual(missing, ['gone'])

    def test_rust_crates_of_kbuild_only(self):
        roots = [os.path.relpath(r, self.top) for r in ra.kbuild_crates(self.top)]
        self.assertEqual(roots, ['src/dmabuf_memory.rs', 'samples/rust/rust_dmabuf_exporter.rs'])

    def test_rust_project_json_is_rewritten(self):
        pj = {'crates': [
            {'display_name': 'core', 'root_module': '/x/core/lib.rs', 'deps': []},
            {'display_name': 'kernel', 'root_module': os.path.join(self.tree, 'rust/kernel/lib.rs'),
             'deps': [{'crate': 0, 'name': 'core'}], 'cfg': ['CONFIG_X'], 'edition': '2021',
             'source': {'include_dirs': [os.path.join(self.tree, 'rust/kernel')], 'exclude_dirs': []}},
        ]}
        write(os.path.join(self.top, 'rust-project.json'), json.dumps(pj))
        p = subprocess.run([sys.executable, SCRIPT, self.top, self.tree, self.out],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.load(open(os.path.join(self.top, 'rust-project.json')))['crates']
        names = [c['display_name'] for c in out]
        self.assertEqual(names, ['core', 'kernel', 'dmabuf_memory', 'rust_dmabuf_exporter'])
        kernel = out[1]
        self.assertEqual(kernel['root_module'], os.path.join(self.out, 'kernel', 'lib.rs'))
        self.assertIn(os.path.join(self.top, 'rust', 'kernel'), kernel['source']['include_dirs'])
        for c in out[2:]:
            self.assertEqual([d['name'] for d in c['deps']], ['core', 'kernel'])
            self.assertEqual(c['cfg'], ['CONFIG_X'])

    def test_a_json_without_the_kernel_crate_is_refused(self):
        write(os.path.join(self.top, 'rust-project.json'), json.dumps({'crates': []}))
        p = subprocess.run([sys.executable, SCRIPT, self.top, self.tree, self.out],
                           capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('no crate core', p.stderr)


if __name__ == '__main__':
    unittest.main()
