"""normlab.provenance: the commit that reports and benchmarks name."""
import subprocess

from normlab import provenance


def test_git_commit_names_the_sha_and_a_dirty_tree(tmp_path):
  assert provenance.git_commit(str(tmp_path)) is None  # not a checkout
  git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tmp_path,  # noqa: E731
                                  check=True, capture_output=True, text=True).stdout.strip()
  git("init", "-q")
  (tmp_path / "f.txt").write_text("a")
  git("add", "f.txt")
  git("commit", "-qm", "one")
  sha = git("rev-parse", "--short", "HEAD")
  assert provenance.git_commit(str(tmp_path)) == (sha, "")
  (tmp_path / "new.txt").write_text("untracked files do not count")
  assert provenance.git_commit(str(tmp_path)) == (sha, "")
  (tmp_path / "f.txt").write_text("b")
  assert provenance.git_commit(str(tmp_path)) == (sha, "M f.txt")
