/**
 * Preload for `node --import` that records the memory of the process it is loaded into. It
 * samples process.memoryUsage() every 250 ms, and when the process exits it writes one JSON
 * object to the file named by BENCH_RSS_REPORT: `{"maxRssBytes", "userCpuMs", "systemCpuMs",
 * "samples": [[ms since start, RSS, V8 heap used, external bytes], ...]}`, sizes in bytes.
 * `maxRssBytes` is the kernel's peak (getrusage `ru_maxrss`), so it also covers moments between
 * two samples. No report is written when the process dies from a signal it does not handle.
 * Plain JavaScript on purpose: a TypeScript preload would load Node's type stripper, which adds
 * about 17 MiB to the RSS being measured (Node 24).
 */
import { writeFileSync } from 'node:fs';

const SAMPLE_INTERVAL_MS = 250;
const reportPath = process.env.BENCH_RSS_REPORT;

if (reportPath !== undefined && reportPath !== '') {
  const started = performance.now();
  const samples = [];
  const sample = () => {
    const memory = process.memoryUsage();
    samples.push([Math.round(performance.now() - started), memory.rss, memory.heapUsed, memory.external]);
  };
  sample();
  // unref: the sampling must not keep a finished process alive.
  setInterval(sample, SAMPLE_INTERVAL_MS).unref();
  process.on('exit', () => {
    sample();
    const usage = process.resourceUsage();
    const report = {
      // ru_maxrss is in KiB on Linux.
      maxRssBytes: usage.maxRSS * 1024,
      userCpuMs: Math.round(usage.userCPUTime / 1000),
      systemCpuMs: Math.round(usage.systemCPUTime / 1000),
      samples,
    };
    writeFileSync(reportPath, JSON.stringify(report));
  });
}
