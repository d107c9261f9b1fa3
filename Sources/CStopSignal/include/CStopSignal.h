#ifndef RLHF_STOP_SIGNAL_H
#define RLHF_STOP_SIGNAL_H

/// Installs handlers for SIGINT, SIGTERM and SIGUSR1 (Slurm's --signal): the first one only
/// records its number (training loops poll it between steps, then checkpoint and exit); a second
/// one ends the process at once with status 128 + signal. Returns 0, or -1 if sigaction failed.
int rlhf_install_stop_handlers(void);

/// Marks this process as a rank serving placed roles: a first signal is recorded with a message
/// saying that rank 0 decides (under mpirun every rank gets SIGUSR1 from Slurm's warning, and the
/// driver stops them all); a second one still exits at once.
void rlhf_mark_serving_rank(void);

/// The text the stop handler writes before its message ("rank r (role, step s): ").
void rlhf_set_report_prefix(const char *prefix);

/// The signal that asked this process to stop, or 0.
int rlhf_stop_signal(void);

/// Records `signal` as if it had arrived (tests), or clears the request with 0.
void rlhf_set_stop_signal(int signal);

/// Counts SIGCONT deliveries (a stopped process continued), so that a suspension is noticed even
/// when it fell outside the heartbeat's wait. Returns 0, or -1 if sigaction failed.
int rlhf_install_continue_counter(void);

/// How many times this process was continued after a stop since the counter was installed.
int rlhf_continued_count(void);

#endif
