//! The input stream: keys and pointer events go out on a stream of their own, written by
//! a task of their own, so they never wait behind display traffic.

use oriel_protocol::{Channel, InputEvent};
use oriel_transport::{send_message, TransportError};
use tokio::sync::mpsc;

use crate::error::ClientError;

/// Input events queued before the writer; beyond this `try_send` drops.
const INPUT_QUEUE: usize = 256;

/// Sends input events on the input stream; cheap to clone.
#[derive(Clone)]
pub struct InputSender {
    tx: mpsc::Sender<InputEvent>,
}

impl InputSender {
    /// Queues an event; errors once the session has ended.
    pub async fn send(&self, event: InputEvent) -> Result<(), ClientError> {
        self.tx
            .send(event)
            .await
            .map_err(|_| ClientError::Lost("input stream closed".into()))
    }

    /// Queues an event without waiting (for UI threads); false when the queue is full
    /// or the session has ended, and the event is dropped.
    pub fn try_send(&self, event: InputEvent) -> bool {
        self.tx.try_send(event).is_ok()
    }
}

/// Opens the input stream and starts its writer.
pub(crate) async fn open_input(conn: &quinn::Connection) -> Result<InputSender, ClientError> {
    let mut stream = conn.open_uni().await.map_err(TransportError::from)?;
    stream
        .write_all(&[Channel::Input as u8])
        .await
        .map_err(TransportError::from)?;
    let (tx, mut rx) = mpsc::channel::<InputEvent>(INPUT_QUEUE);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if send_message(&mut stream, &event, Channel::Input.max_message_len())
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = stream.finish();
    });
    Ok(InputSender { tx })
}
