"""The openai Node SDK (tests/e2e/node, installed by `npm ci` in scripts/test) against the gateway
binary: `node --test` runs its chat, tool, embeddings and responses tests, and the README's
JavaScript examples run as written (only the address and key pointed at the test gateway)."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import GATEWAY_KEY, ROOT

NODE_DIR = pathlib.Path(__file__).resolve().parent / "node"
README_JS = re.findall(r"```js\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def node_or_skip() -> str:
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "openai").is_dir()
    if node is None or not installed:
        if os.environ.get("CI"):
            pytest.fail("node and tests/e2e/node/node_modules are needed (scripts/test runs npm ci)")
        pytest.skip("node or the Node SDK is not installed (cd tests/e2e/node && npm ci)")
    return node


@pytest.mark.parametrize("snippet", README_JS, ids=[f"js-{i}" for i in range(len(README_JS))])
def test_readme_js_example_works(gateway, snippet, tmp_path):
    node = node_or_skip()
    code = snippet.replace("http://localhost:8000", gateway).replace("my-gateway-key", GATEWAY_KEY)
    # Inside the package, so `import "openai"` resolves to its node_modules.
    script = NODE_DIR / f"readme-{tmp_path.name}.mjs"
    script.write_text(code)
    try:
        out = subprocess.run([node, script.name], cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    finally:
        script.unlink()
    assert out.returncode == 0, out.stderr
    assert "You said:" in out.stdout, out.stdout


def test_readme_has_a_js_example():
    assert README_JS


def test_node_openai_sdk(gateway):
    node = node_or_skip()
    env = dict(os.environ, GATEWAY_URL=gateway, GATEWAY_KEY=GATEWAY_KEY)
    out = subprocess.run([node, "--test", "--test-reporter=spec", "openai.test.mjs"], cwd=NODE_DIR, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    # The spec reporter ends with its counts: every test ran and passed.
    assert "ℹ pass 9" in out.stdout and "ℹ fail 0" in out.stdout, out.stdout[-3000:]
