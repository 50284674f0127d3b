use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts starts, and tasks alive (a task counts until it is dropped,
/// whether it returned or was aborted).
#[derive(Clone, Default)]
struct Counts {
    started: Arc<AtomicUsize>,
    alive: Arc<AtomicUsize>,
    finished_cleanly: Arc<AtomicUsize>,
}

struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counts {
    /// A task that stops when told to, after a little clean-up work.
    fn polite(&self) -> impl Fn(Stop) -> BoxFuture<'static, ()> + Send + Sync + 'static {
        let counts = self.clone();
        move |stop| {
            let counts = counts.clone();
            async move {
                let _alive = counts.enter();
                stop.await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                counts.finished_cleanly.fetch_add(1, Ordering::SeqCst);
            }
            .boxed()
        }
    }

    /// A task that ignores its stop.
    fn stubborn(&self) -> impl Fn(Stop) -> BoxFuture<'static, ()> + Send + Sync + 'static {
        let counts = self.clone();
        move |_stop| {
            let counts = counts.clone();
            async move {
                let _alive = counts.enter();
                std::future::pending::<()>().await;
            }
            .boxed()
        }
    }

    fn enter(&self) -> Alive {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.alive.fetch_add(1, Ordering::SeqCst);
        Alive(Arc::clone(&self.alive))
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }
}

async fn wait_until(what: &str, test: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(600), async {
        while !test() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

const DRAIN: Duration = Duration::from_secs(20);

#[tokio::test(start_paused = true)]
async fn tasks_run_only_while_leading_and_restart_when_leading_again() {
    let (leading, rx) = watch::channel(false);
    let (polite, stubborn) = (Counts::default(), Counts::default());
    let gate = LeaderOnly::new(DRAIN)
        .task("polite", polite.polite())
        .task("stubborn", stubborn.stubborn());
    let (shutdown, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(gate.run(Leadership(rx), async {
        let _ = stopped.await;
    }));

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        polite.started() + stubborn.started(),
        0,
        "started as a follower"
    );

    leading.send_replace(true);
    wait_until("both run", || polite.alive() == 1 && stubborn.alive() == 1).await;
    // Losing the lease aborts at once: no clean-up work, however polite.
    leading.send_replace(false);
    wait_until("both stopped", || polite.alive() + stubborn.alive() == 0).await;
    assert_eq!(polite.finished_cleanly.load(Ordering::SeqCst), 0);

    leading.send_replace(true);
    wait_until("both run again", || {
        polite.alive() == 1 && stubborn.alive() == 1
    })
    .await;
    assert_eq!((polite.started(), stubborn.started()), (2, 2));

    // Shutdown lets the polite task finish its work; the stubborn one is
    // aborted once the drain time is up.
    shutdown.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(polite.finished_cleanly.load(Ordering::SeqCst), 1);
    assert_eq!(polite.alive() + stubborn.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ends_while_leading_stops_the_others_and_is_named() {
    let (_leading, rx) = watch::channel(true);
    let polite = Counts::default();
    let gate =
        LeaderOnly::new(DRAIN)
            .task("polite", polite.polite())
            .task("quitter", |_stop| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
    let result = gate.run(Leadership(rx), std::future::pending()).await;
    assert!(
        matches!(result, Err(LeaderError::TaskStopped("quitter"))),
        "{result:?}"
    );
    assert_eq!(polite.alive(), 0);
    assert_eq!(polite.finished_cleanly.load(Ordering::SeqCst), 1);

    let (_leading, rx) = watch::channel(true);
    let gate = LeaderOnly::new(DRAIN).task("panicky", |_stop| async {
        panic!("a reconciler bug");
    });
    let result = gate.run(Leadership(rx), std::future::pending()).await;
    assert!(
        matches!(result, Err(LeaderError::TaskPanicked("panicky"))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_gone_elector_leads_no_more() {
    let (leading, rx) = watch::channel(true);
    let mut leadership = Leadership(rx);
    assert!(leadership.is_leading());
    // Its task aborted: the last word was "leading", but nobody renews.
    drop(leading);
    assert!(!leadership.is_leading());
    leadership.lost().await;
    let acquired = tokio::time::timeout(Duration::from_secs(600), leadership.acquired()).await;
    assert!(acquired.is_err(), "a gone elector was taken for a leader");
}
