"""The dispatcher: usage, --version, unknown commands, OpenVINO's errors cut to their cause."""
import subprocess
import sys

from ovphi.cli import COMMANDS, main, one_line
from ovphi.errors import OvphiError


def run(*args):
    return subprocess.run([sys.executable, "-m", "ovphi", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_usage_lists_every_command_the_same_way(capsys):
    assert main([]) == 2 and main(["--help"]) == 0 and main(["help"]) == 0
    printed = capsys.readouterr().out.split("\n\n", 1)[1]
    for name in COMMANDS:
        assert printed.count(f"  {name} ") == 3  # once per usage print
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("ovphi 0.")


def test_an_unknown_command_says_so():
    result = run("nope")
    assert result.returncode == 2 and "unknown command 'nope'" in result.stderr


def test_every_command_shows_its_defaults():
    for name in COMMANDS:
        result = run(name, "--help")
        assert result.returncode == 0 and f"ovphi {name}" in result.stdout
    assert "(default: LATENCY)" in run("ask", "--help").stdout
    assert "(default: 128)" in run("convert", "--help").stdout


def test_openvino_errors_keep_their_cause_without_build_paths():
    error = RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n"
                         "Exception from src/frontends/ir/src/ir_deserializer.cpp:712:\n"
                         "Incorrect weights in bin file!\n")
    assert one_line(error) == "RuntimeError: Incorrect weights in bin file! (OVPHI_DEBUG=1 shows where)"
    assert one_line(OvphiError("plain")) == "plain"
    check = RuntimeError("Check 'x' failed at /home/jenkins/agent/src/plugin.cpp:12:\nunsupported property FOO\n")
    assert "unsupported property FOO" in one_line(check) and "jenkins" not in one_line(check)


def test_a_forked_child_ends_quietly_on_sigterm():
    """openvino_telemetry forks a sender and ends it with SIGTERM: with ovphi's handler it printed a
    KeyboardInterrupt traceback after a successful convert."""
    import subprocess
    import sys

    program = """if True:
        import os, signal, time
        from ovphi.cli import stop_on_sigterm
        stop_on_sigterm()
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            print("parent interrupted")
    """
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["True", "parent interrupted"] and "Traceback" not in result.stderr


def test_an_interrupt_a_library_turned_into_its_own_error_is_still_an_interrupt():
    """A signal during an import, seen in CI: `RuntimeError: Error calling __set_name__ ...` from the
    KeyboardInterrupt."""
    from ovphi.cli import caused_by_interrupt

    def raising(error):
        try:
            raise error
        except BaseException as caught:
            return caught

    try:
        class Named:
            def __set_name__(self, owner, name):
                raise KeyboardInterrupt

        type("Holder", (), {"field": Named()})
    except RuntimeError as error:
        assert caused_by_interrupt(error)
    else:
        raise AssertionError("type() did not turn the KeyboardInterrupt into a RuntimeError")
    assert not caused_by_interrupt(raising(RuntimeError("plain")))
    looped = RuntimeError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped
    assert not caused_by_interrupt(looped)
