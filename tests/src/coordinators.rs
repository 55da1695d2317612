//! The harness's coordinators beyond the first: standbys, the leader, their logs.

use names::LEADER_KEY;
use schemas::names;

use crate::{Proc, Swarm};

impl Swarm {
    /// Starts another coordinator named `name`, with the harness's settings and its log in
    /// `<name>.log`: while one leads, it stands by.
    pub fn spawn_standby(&self, name: &str) -> Proc {
        let mut command = self.base_command("swarm-coordinator", name);
        command.envs(self.coordinator_env.iter().map(|(k, v)| (k, v)));
        command.env("SWARM_COORDINATOR__NAME", name);
        Proc {
            name: name.into(),
            child: command.spawn().expect("coordinator starts"),
        }
    }

    /// The log of the component started as `name` (`coordinator`, a drone's name, ...), without
    /// the terminal colours its fields may carry.
    pub fn log(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let mut plain = String::with_capacity(log.len());
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // ESC [ ... m
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// The leading coordinator's record, if one leads.
    pub async fn leader(&self) -> Option<schemas::LeaderRecord> {
        let js = async_nats::jetstream::new(self.client().await);
        let kv = js.get_key_value(names::LEADER_BUCKET).await.ok()?;
        let entry = kv.entry(LEADER_KEY).await.ok()??;
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            return None;
        }
        schemas::decode(&entry.value).ok()
    }
}
