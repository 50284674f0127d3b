use std::path::PathBuf;

/// Why the test cluster could not be built, started or driven.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("building Kubernetes failed ({status}); its output is above")]
    Build { status: std::process::ExitStatus },

    #[error("{name} exited ({status}); last lines of {}:\n{tail}", log.display())]
    Exited {
        name: &'static str,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },

    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },

    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),

    #[error("loading the kubeconfig: {0}")]
    Kubeconfig(#[from] Box<kube::config::KubeconfigError>),

    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("the hollow-node agent stopped: {0}")]
    AgentStopped(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Kube {
            what,
            source: Box::new(source),
        }
    }
}
