#ifndef RLHF_STOP_SIGNAL_H
#define RLHF_STOP_SIGNAL_H

/// Installs handlers for SIGINT, SIGTERM and SIGUSR1 (Slurm's --signal): the first one only
/// records its number (training loops poll it between steps, then checkpoint and exit); a second
/// one ends the process at once with status 128 + signal. Returns 0, or -1 if sigaction failed.
int rlhf_install_stop_handlers(void);

/// Puts back the default actions of SIGINT, SIGTERM and SIGUSR1 (a process that cannot stop
/// gracefully: it ends as before).
void rlhf_restore_default_stop_actions(void);

/// The signal that asked this process to stop, or 0.
int rlhf_stop_signal(void);

/// Records `signal` as if it had arrived (tests), or clears the request with 0.
void rlhf_set_stop_signal(int signal);

#endif
