//! What happens when a service process exits: the decision of the reconciler, pure.

use kiln_config::RestartPolicy;

/// The phase a replica ends in, or the restart it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDecision {
    /// Start it again after the backoff delay.
    Restart,
    /// It finished its work (exit 0) and is not restarted.
    Completed,
    /// It failed and is not restarted.
    Failed,
}

/// `code` is the exit code, `None` when a signal ended it.
pub fn on_exit(policy: RestartPolicy, code: Option<i32>) -> ExitDecision {
    let success = code == Some(0);
    match (policy, success) {
        (RestartPolicy::Always, _) | (RestartPolicy::OnFailure, false) => ExitDecision::Restart,
        (RestartPolicy::OnFailure | RestartPolicy::Never, true) => ExitDecision::Completed,
        (RestartPolicy::Never, false) => ExitDecision::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_decides_on_the_exit_code() {
        use ExitDecision::*;
        use RestartPolicy::*;
        assert_eq!(on_exit(Always, Some(0)), Restart);
        assert_eq!(on_exit(Always, Some(3)), Restart);
        assert_eq!(on_exit(OnFailure, Some(0)), Completed);
        assert_eq!(on_exit(OnFailure, Some(1)), Restart);
        assert_eq!(on_exit(OnFailure, None), Restart);
        assert_eq!(on_exit(Never, Some(0)), Completed);
        assert_eq!(on_exit(Never, Some(2)), Failed);
        assert_eq!(on_exit(Never, None), Failed);
    }
}
