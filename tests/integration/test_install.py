"""test_install.py — `make install` to a prefix gives a usable library, and
the Makefile's targets install and build what they say (`make -n`).

Installs the build into a temporary prefix with `cmake --install`, then
compiles a small program against it using only `pkg-config` (shared and
static linking) and runs it: the header, the libraries and the relocatable
evstore.pc must all be right.  Sanitizer builds are skipped: their library
needs the sanitizer runtime in every program that links it.
"""
import os
import re
import subprocess
import sys
import tempfile
import unittest

BUILD = os.environ.get("EVS_BUILD_DIR", "build")

PROGRAM = r"""
#include <evstore.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    evs_store *s;
    evs_append_result r;
    evs_event_in e;
    memset(&e, 0, sizeof e);
    e.event_type = "Installed";
    e.data = "{\"ok\":true}";
    e.data_len = strlen(e.data);
    if (argc < 2 || evs_store_create(&s) || evs_store_open(s, argv[1], EVS_OPEN_CREATE)) return 2;
    int rc = evs_append(s, "install-1", EVS_EXPECT_NO_STREAM, &e, 1, &r, NULL);
    printf("%s %llu\n", evs_errname(rc), (unsigned long long)evs_head(s));
    evs_store_close(s);
    return rc ? 1 : 0;
}
"""


class InstallTest(unittest.TestCase):
    def setUp(self):
        if os.environ.get("EVS_SANITIZED"):
            self.skipTest("sanitizer build: the installed library needs the sanitizer runtime")
        self.tmp = tempfile.TemporaryDirectory(prefix="evs-install-")
        self.prefix = os.path.join(self.tmp.name, "prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", self.prefix], check=True,
                       stdout=subprocess.DEVNULL)
        self.src = os.path.join(self.tmp.name, "prog.c")
        with open(self.src, "w") as f:
            f.write(PROGRAM)
        self.env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.prefix, "lib", "pkgconfig"))

    def tearDown(self):
        self.tmp.cleanup()

    def pkg(self, *args):
        out = subprocess.run(["pkg-config", *args, "evstore"], env=self.env, check=True,
                             capture_output=True, text=True).stdout
        return out.split()

    def run_program(self, exe, extra_env=None):
        store = os.path.join(self.tmp.name, "store-" + os.path.basename(exe))
        env = dict(os.environ, **(extra_env or {}))
        p = subprocess.run([exe, store], env=env, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "OK 1")

    def test_files_installed(self):
        for rel in ["include/evstore.h", "include/evstore_bus.h", "lib/libevstore.a", "lib/libevstore.so",
                    "lib/pkgconfig/evstore.pc", "bin/evstore"]:
            self.assertTrue(os.path.exists(os.path.join(self.prefix, rel)), rel)
        p = subprocess.run([os.path.join(self.prefix, "bin", "evstore"), "--version"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("0.1.0", p.stdout + p.stderr)

    def test_shared_link_with_pkg_config(self):
        exe = os.path.join(self.tmp.name, "prog-shared")
        subprocess.run(["cc", self.src, "-o", exe, *self.pkg("--cflags", "--libs")], check=True)
        self.run_program(exe, {"LD_LIBRARY_PATH": os.path.join(self.prefix, "lib")})

    def test_static_link_with_pkg_config(self):
        exe = os.path.join(self.tmp.name, "prog-static")
        libs = [a for a in self.pkg("--static", "--libs") if a != "-levstore"]
        subprocess.run(["cc", self.src, "-o", exe, *self.pkg("--cflags"),
                        os.path.join(self.prefix, "lib", "libevstore.a"), *libs, "-lm"], check=True)
        self.run_program(exe)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MakefileTest(unittest.TestCase):
    """What the Makefile's targets would do (make -n: printed, nothing run)."""

    def dry(self, target):
        p = subprocess.run(["make", "-n", "-C", ROOT, target, "BUILD=build-dry-run"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def packages(self, text):
        m = re.search(r"for p in ([^;]*); do dpkg-query", text)
        self.assertTrue(m, text)
        return set(m.group(1).split())

    def test_run_builds_the_program_with_what_it_needs(self):
        out = self.dry("run")
        self.assertIn("--target evstore", out)
        self.assertRegex(out, r"(?m)^build-dry-run/evstore serve -d ./data$")
        pkgs = self.packages(out)
        self.assertTrue({"cmake", "liblmdb-dev", "libmicrohttpd-dev", "libwslay-dev", "libcurl4-openssl-dev"} <= pkgs)
        for tool in ("clang", "prometheus", "python3", "curl"):
            self.assertNotIn(tool, pkgs, "make run installs %s" % tool)

    def test_test_installs_what_the_tests_use(self):
        pkgs = self.packages(self.dry("test-plain"))
        self.assertTrue({"python3", "curl", "prometheus", "cmake"} <= pkgs, pkgs)
        self.assertIn("clang", self.packages(self.dry("fuzz")))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(1 if failed else 0)
