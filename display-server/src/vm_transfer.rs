//! A VM's live migration over one QUIC stream between two display servers: the
//! source's [`oriel_vmm::migrate`] rounds run on a blocking thread and hand each record
//! to the stream; the destination applies them as they come and starts the VM.
//!
//! On the stream (integers little-endian): the source sends the machine's shape
//! ([`Shape`]: vCPUs, MiB, width, height as u32s), then records, each as its length
//! (u32, at most [`oriel_vmm::MAX_RECORD`]) and bytes; at the end of each round an empty
//! record asks the destination to answer [`APPLIED`] once it has applied everything
//! before it, so no round is still on the way when the VM pauses. After the last record the
//! destination answers [`READY`]; the source answers [`GO`]; the destination starts the
//! VM and answers [`RUNNING`] with the downtime it measured (u64 µs), or [`FAILED`] if
//! it could not start it. Until the source hears RUNNING its copy stays paused, and it
//! resumes it on FAILED or on any failure before GO. A source that hears nothing after
//! GO cannot know which side runs the VM: its copy stays paused rather than risk two.
//! A destination that does not get GO discards what it received.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use oriel_vmm::{Convergence, MigrationReport, Outgoing, RecordSink, Vm, VmConfig, MAX_RECORD};
use quinn::{RecvStream, SendStream};

/// Application protocol of host-to-host migration connections.
pub const MIGRATION_ALPN: &[u8] = b"oriel-migrate/1";
pub const READY: u8 = 1;
pub const GO: u8 = 2;
pub const RUNNING: u8 = 3;
pub const FAILED: u8 = 5;
pub const APPLIED: u8 = 4;
/// Records queued between the copying thread and the stream.
const QUEUED_RECORDS: usize = 4;

/// What the source learns from a migration that completed.
#[derive(Debug, Clone)]
pub struct Sent {
    pub report: MigrationReport,
    /// Last guest instruction here → first on the destination, by its clock.
    pub downtime: Duration,
}

/// The machine's shape, checked by the destination before any memory is taken.
fn shape(config: &VmConfig) -> [u8; 16] {
    let mut out = [0u8; 16];
    let memory = u32::try_from(config.memory_mib).unwrap_or(u32::MAX);
    for (i, v) in [u32::from(config.vcpus), memory, config.width, config.height]
        .into_iter()
        .enumerate()
    {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Sends the VM `outgoing` is reading. On success the source copy is committed (paused
/// for good): the caller drops its [`Vm`]. On error the VM runs on here, unless the
/// destination went silent after GO (see the module's doc).
pub async fn send_vm(
    stream: (SendStream, RecvStream),
    config: &VmConfig,
    outgoing: Outgoing,
    policy: Convergence,
) -> anyhow::Result<Sent> {
    send_vm_stopping(stream, config, outgoing, policy, || {}).await
}

/// [`send_vm`], calling `stopping` just before the VM pauses for the stop-and-copy
/// (a display server holds the desktop's input from then on).
pub async fn send_vm_stopping(
    (mut send, mut recv): (SendStream, RecvStream),
    config: &VmConfig,
    outgoing: Outgoing,
    policy: Convergence,
    stopping: impl FnOnce() + Send + 'static,
) -> anyhow::Result<Sent> {
    send.write_all(&shape(config)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(QUEUED_RECORDS);
    let (applied_tx, applied) = std::sync::mpsc::channel();
    let copying = tokio::task::spawn_blocking(move || {
        let mut sink = QuicSink {
            tx,
            applied,
            stopping: Some(Box::new(stopping)),
        };
        oriel_vmm::migrate(outgoing, policy, &mut sink)
    });
    let writing = async {
        // Owned here, so the copying thread's wait for it ends with this task.
        let applied_tx = applied_tx;
        // `None` asks for the destination's APPLIED.
        while let Some(record) = rx.recv().await {
            let record = record.unwrap_or_default();
            let len = u32::try_from(record.len()).context("record too large")?;
            send.write_all(&len.to_le_bytes()).await?;
            send.write_all(&record).await?;
            if record.is_empty() {
                if read_byte(&mut recv).await? != APPLIED {
                    bail!("the destination answered out of turn");
                }
                let _ = applied_tx.send(());
            }
        }
        anyhow::Ok((send, recv))
    };
    // The writer ends when the copying thread drops its sink (done or failed).
    let (copied, written) = tokio::join!(copying, writing);
    let (outgoing, report) = copied.context("the copying thread failed")??;
    let (mut send, mut recv) = written.context("cannot send to the destination")?;
    if read_byte(&mut recv)
        .await
        .context("the destination did not confirm")?
        != READY
    {
        bail!("the destination refused the VM");
    }
    send.write_all(&[GO]).await?;
    send.finish()?;
    match read_byte(&mut recv).await {
        // The destination runs the VM: this copy stays paused for good.
        Ok(RUNNING) => outgoing.commit(),
        // Nothing runs there: dropping `outgoing` resumes the VM here.
        Ok(FAILED) => bail!("the destination could not start the VM; it runs on here"),
        other => {
            outgoing.commit();
            bail!(
                "the destination did not say whether it runs the VM ({other:?}); this copy stays paused so that it never runs twice"
            );
        }
    }
    let mut downtime = [0u8; 8];
    recv.read_exact(&mut downtime).await?;
    Ok(Sent {
        report,
        downtime: Duration::from_micros(u64::from_le_bytes(downtime)),
    })
}

/// Receives a VM of `config`, starts it once the source lets go of its copy, and hands
/// it to `adopt` before the source hears that it runs (so that whatever the source
/// sends here next, such as its viewers, finds it in place). Returns the downtime.
pub async fn receive_vm(
    (mut send, mut recv): (SendStream, RecvStream),
    config: VmConfig,
    adopt: impl FnOnce(Vm) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let mut header = [0u8; 16];
    recv.read_exact(&mut header).await?;
    if header != shape(&config) {
        bail!("the source's VM is not of the shape this desktop has");
    }
    let mut incoming = tokio::task::block_in_place(|| Vm::migrate_in(config))?;
    let mut record = Vec::new();
    loop {
        let mut len = [0u8; 4];
        recv.read_exact(&mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            send.write_all(&[APPLIED]).await?;
            continue;
        }
        if len > MAX_RECORD {
            bail!("a record of {len} bytes from the source");
        }
        record.resize(len, 0);
        recv.read_exact(&mut record).await?;
        if incoming.apply(&record)? {
            break;
        }
    }
    send.write_all(&[READY]).await?;
    if read_byte(&mut recv)
        .await
        .context("the source did not let go")?
        != GO
    {
        bail!("the source kept the VM");
    }
    let started = tokio::task::block_in_place(|| incoming.start())
        .map_err(anyhow::Error::from)
        .and_then(|(vm, downtime)| adopt(vm).map(|()| downtime));
    let downtime = match started {
        Ok(downtime) => downtime,
        // Nothing runs here (a VM that `adopt` refused was dropped): the source may
        // resume its copy.
        Err(e) => {
            let _ = send.write_all(&[FAILED]).await;
            let _ = send.finish();
            return Err(e);
        }
    };
    let micros = u64::try_from(downtime.as_micros()).unwrap_or(u64::MAX);
    let mut answer = vec![RUNNING];
    answer.extend_from_slice(&micros.to_le_bytes());
    send.write_all(&answer).await?;
    send.finish()?;
    Ok(downtime)
}

/// The copying thread's side of the stream: records queued for the writer task, and
/// its word that the destination applied them.
struct QuicSink {
    tx: tokio::sync::mpsc::Sender<Option<Vec<u8>>>,
    applied: std::sync::mpsc::Receiver<()>,
    stopping: Option<Box<dyn FnOnce() + Send>>,
}

impl RecordSink for QuicSink {
    type Error = &'static str;

    fn send(&mut self, record: Vec<u8>) -> Result<(), Self::Error> {
        self.tx
            .blocking_send(Some(record))
            .map_err(|_| "the connection ended")
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.tx
            .blocking_send(None)
            .map_err(|_| "the connection ended")?;
        self.applied.recv().map_err(|_| "the connection ended")
    }

    fn stopping(&mut self) {
        if let Some(stopping) = self.stopping.take() {
            stopping();
        }
    }
}

async fn read_byte(recv: &mut RecvStream) -> anyhow::Result<u8> {
    let mut byte = [0u8; 1];
    recv.read_exact(&mut byte)
        .await
        .map_err(|e| anyhow!("the peer went away: {e}"))?;
    Ok(byte[0])
}
