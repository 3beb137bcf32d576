//! Follow-up jobs a task asked for. The sandbox stages them while the task
//! runs; they are put only when it succeeded, on the slot's own connection,
//! before its job is deleted. A job that fails or is retried leaves none
//! behind, and a retry does not repeat them. A worker that dies between the
//! puts and the delete runs the job again and repeats them: at least once.

use super::conn::Conn;
use crate::sandbox::PutRequest;

/// Puts every staged job in order. `Ok(Err(why))`: beanstalkd refused one
/// (those before it are on the queue); `Err`: the connection was lost.
pub(super) async fn send(
    conn: &mut Conn,
    puts: &[PutRequest],
) -> beanbox_queue::Result<Result<(), String>> {
    for (n, request) in puts.iter().enumerate() {
        let body = request.body();
        let options = (
            request
                .options
                .priority
                .unwrap_or(beanbox_queue::producer::DEFAULT_PRIORITY),
            request.options.delay_secs.unwrap_or(0),
            request
                .options
                .ttr_secs
                .unwrap_or(beanbox_queue::producer::DEFAULT_TTR),
        );
        match conn.put_retrying(&request.tube, options, &body).await {
            Ok(_) | Err(beanbox_queue::Error::Buried(_)) => {}
            Err(e) if e.is_connection_error() => return Err(e),
            Err(e) => {
                return Ok(Err(format!(
                    "put {} of {} (tube `{}`) refused: {e}",
                    n + 1,
                    puts.len(),
                    request.tube
                )));
            }
        }
    }
    Ok(Ok(()))
}
