"""Every Python example of the README, run as written against a gateway set up the way the README
says (only the address is pointed at the test gateway, which is served by the fake upstreams)."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT, start_gateway

README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.fixture(scope="module")
def readme_gateway(fake_upstream):
    env = {"API_KEY": "my-gateway-key", "AWS_CLIENT_CREDENTIALS": "AKIDGATEWAYCLIENT1:a-secret-you-issue"}
    proc, url = start_gateway(fake_upstream, env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_readme_has_python_examples():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"python-{i}" for i in range(len(SNIPPETS))])
def test_python_example_works(readme_gateway, snippet):
    code = snippet.replace("http://localhost:8000", readme_gateway)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # A snippet says what it prints with `# prints: …` comments; the others print a chat answer.
    printed = re.findall(r"# prints: (.*)", snippet)
    if printed:
        assert out.stdout.splitlines() == printed, out.stdout
    else:
        assert "You said:" in out.stdout, out.stdout
