"""twistd pokan's handler options, parsed and installed in process."""

from __future__ import annotations

import io
import os
import sys

from twisted.python import usage
from twisted.trial import unittest

from pokan.daemon.tap import Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--address", "127.0.0.1", *args])
    return options


class HandlerOptionsTests(unittest.TestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["handler"], [])
        self.assertEqual(options["on-event"], [])
        self.assertEqual(options["handler-timeout"], 60.0)
        self.assertEqual(options["handler-queue"], 100)

    def test_repeatable_and_installed(self) -> None:
        for script in ("a", "b"):  # in the working directory, as ./a and ./b
            with open(script, "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(script, 0o755)
            self.addCleanup(os.remove, script)
        options = parse(
            "--handler", "log=start",
            "--handler", "log=new_key",
            "--on-event", "key_changed=./a",
            "--on-event", "key_removed:x/*=./b",
            "--handler-timeout", "2.5",
            "--handler-queue", "7",
        )  # fmt: skip
        self.assertEqual([h.label for h in options["handler"]], ["log", "log"])
        self.assertEqual(
            [str(c) for c in options["on-event"]],
            ["key_changed=./a", "key_removed:x/*=./b"],
        )
        self.assertEqual(
            (options["handler-timeout"], options["handler-queue"]), (2.5, 7)
        )
        server = makeService(options).server  # type: ignore[attr-defined]
        for event in ("start", "new_key", "key_changed", "key_removed", "shutdown"):
            self.assertTrue(server.events.has_handlers(event), event)
        self.assertFalse(server.events.has_handlers("before_gossip"))

    def test_usage_errors(self) -> None:
        cases = [
            (["--handler", "no_such_plugin"], "no handler plugin of that name"),
            (["--on-event", "nope=./x"], "unknown event 'nope'"),
            (["--handler-timeout", "-1"], "--handler-timeout must be a positive"),
            (["--handler-timeout", "inf"], "--handler-timeout must be a positive"),
            (["--handler-queue", "0"], "--handler-queue must be a whole number"),
            (["--handler-queue", "x"], "--handler-queue must be a whole number"),
        ]
        for args, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(*args)
            self.assertIn(message, str(caught.exception), args)

    def test_a_command_that_cannot_run_is_refused_at_start(self) -> None:
        with open("not-executable", "w") as f:
            f.write("#!/bin/sh\n")
        self.addCleanup(os.remove, "not-executable")
        cases = [
            ("shutdown=./no-such-script", "./no-such-script not found"),
            ("shutdown=/no/such/dir/x --flag", "/no/such/dir/x not found"),
            ("shutdown=./not-executable", "./not-executable is not executable"),
            ("start=no-such-program-pokan arg", "'no-such-program-pokan' not found"),
        ]
        for value, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse("--on-event", value)
            self.assertIn(f"--on-event {value!r}: {message}", str(caught.exception))

    def test_builtins_and_shell_syntax_are_left_to_the_shell(self) -> None:
        for command in (
            "echo bye > out",
            "sh ./x.sh",
            "VAR=1 ./whatever",
            "$HOME/bin/x",
            "cd /tmp && ./x",
            "(./x)",
        ):
            parse("--on-event", f"shutdown={command}")

    def test_factory_errors_end_the_process_plainly(self) -> None:
        options = parse("--handler", "log=nonsense")
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertEqual(caught.exception.code, 1)
        self.assertIn(": --handler log: unknown events nonsense", out.getvalue())

    def test_plugins_are_scanned_once(self) -> None:
        from pokan.daemon import handler_options
        from pokan.daemon.discovery import discover

        scans = []

        def counting() -> object:
            scans.append(1)
            return discover()

        self.patch(handler_options, "discover", counting)
        parse("--handler", "log", "--handler", "log=start")
        self.assertEqual(len(scans), 1)
