// script.mjs: what every scenario script shares with its Go driver
// (runClient in ../harness_test.go): one JSON event per line on stdout,
// the step it is at for timeout and error reports, --debug output on
// stderr, a watchdog after --timeout seconds (a "timeout" event, exit 3),
// and the end: a "done" event and exit 0, or an "error" event and exit 1.
export class Script {
  constructor(opts, client) {
    this.opts = opts;
    this.client = client;
    this.step = "start";
    this.watchdog = setTimeout(() => {
      this.emit({ event: "timeout", client, step: this.step });
      this.exit(3);
    }, Number(opts.timeout) * 1000);
  }

  emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
  }

  debug(...args) {
    if (this.opts.debug) console.error(...args);
  }

  // exit ends the process once stdout is flushed.
  exit(code) {
    process.stdout.write("", () => process.exit(code));
  }

  fail(err) {
    clearTimeout(this.watchdog);
    this.emit({ event: "error", client: this.client, message: String(err?.stack ?? err), step: this.step });
    this.exit(1);
  }

  // run runs main and ends the script with its outcome.
  run(main) {
    main().then(
      () => {
        clearTimeout(this.watchdog);
        this.emit({ event: "done", client: this.client });
        this.exit(0);
      },
      (err) => this.fail(err),
    );
  }
}
