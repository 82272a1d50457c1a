#include "sim/plot.h"

#include <cstdlib>
#include <fstream>

namespace swarm::sim {

Status write_plot(const std::vector<WindowStats>& windows, const std::string& dir,
                  const std::string& title) {
  {
    std::ofstream dat(dir + "/sim.dat");
    if (!dat) return Status::IOError("cannot write " + dir + "/sim.dat");
    dat << "# t_s tok_s lat_p50_ms lat_p95_ms lat_p99_ms ttft_p50_ms utilisation recoveries\n";
    for (const WindowStats& w : windows) {
      const double len = std::max(1e-9, w.end_s - w.start_s);
      dat << w.end_s << " " << w.tokens / len << " " << 1000 * quantile(w.token_latency_s, 0.5)
          << " " << 1000 * quantile(w.token_latency_s, 0.95) << " "
          << 1000 * quantile(w.token_latency_s, 0.99) << " " << 1000 * quantile(w.ttft_s, 0.5)
          << " " << (w.node_seconds > 0 ? w.busy_s / w.node_seconds : 0) << " " << w.recoveries
          << "\n";
    }
  }
  {
    std::ofstream gp(dir + "/sim.gp");
    if (!gp) return Status::IOError("cannot write " + dir + "/sim.gp");
    gp << "set terminal png size 1200,900\n"
       << "set output '" << dir << "/sim.png'\n"
       << "set multiplot layout 2,2 title '" << title << "'\n"
       << "set xlabel 'simulated time (s)'\nset grid\n"
       << "set ylabel 'tokens/s'\nplot '" << dir
       << "/sim.dat' using 1:2 with lines title 'throughput'\n"
       << "set ylabel 'ms per token'\nplot '" << dir
       << "/sim.dat' using 1:3 with lines title 'p50', '' using 1:4 "
       << "with lines title 'p95', '' using 1:5 with lines title 'p99'\n"
       << "set ylabel 'ms'\nplot '" << dir
       << "/sim.dat' using 1:6 with lines title 'time to first token p50'\n"
       << "set ylabel 'fraction / count'\nset y2label 'recoveries'\nset ytics nomirror\nset "
          "y2tics\nplot '"
       << dir << "/sim.dat' using 1:7 with lines title "
       << "'compute utilisation', '' using 1:8 with impulses axes x1y2 title 'recoveries'\n"
       << "unset multiplot\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return Status::Unavailable("gnuplot is not installed (apt-get install gnuplot-nox); no plot, " +
                               dir + "/sim.dat and sim.gp are written");
  const std::string cmd = "gnuplot '" + dir + "/sim.gp' 2>'" + dir + "/gnuplot.log'";
  if (std::system(cmd.c_str()) != 0)
    return Status::Internal("gnuplot failed; see " + dir + "/gnuplot.log");
  return Status::Ok();
}

}  // namespace swarm::sim
