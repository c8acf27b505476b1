//! A Commander-style service: clients send commands over HTTP, the gateway
//! checks them against the action's JSON Schema and writes them down to the
//! `commands` topic; a processor decides each one from the account's balance
//! (kept in a store), writes its event to `events` with `parent` = the
//! command id, and the store is served as a view.
//!
//! Run it with `cargo run -p kappa-examples --bin commander`. It serves the
//! gateway on a loopback port (embedded log in a scratch directory), sends
//! four `deposit` commands with `?sync=true` (two accepted, one refused by
//! the schema, one rejected by the processor), prints each answer, reads the
//! balance from `GET /views/balances/acct-1` and stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use kappa_gateway::load::HttpClient;
use kappa_gateway::{Gateway, GatewayConfig, ValueFormat, View};
use kappa_log::{EmbeddedLog, Log};
use kappa_service::Envelope;
use kappa_streams::{
    I64, Json, Materialized, Processor, ProcessorContext, StoreHandle, Streams, StreamsBuilder,
    StreamsConfig, StreamsError, Utf8,
};
use serde_json::{Value, json};

const BALANCES: &str = "balances";
/// The longest the program waits for the service or its answers.
const WAIT: Duration = Duration::from_secs(30);

/// Decides `deposit` commands; one instance per task (partition).
struct Accounts(StoreHandle<String, i64>);

impl Processor<String, Envelope, String, Envelope> for Accounts {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, Envelope>,
        account: String, // the command's key, else its id
        command: Envelope,
    ) -> Result<(), StreamsError> {
        if command.key.is_none() {
            let why = json!({"reason": "no account: send it as the key"});
            return ctx.forward(account, command.reject("deposit-refused", why));
        }
        // The gateway checked `amount` against the schema before writing the command.
        let amount = command.data["amount"].as_i64().unwrap_or(0);
        let balance = ctx.get(&self.0, &account)?.unwrap_or(0) + amount;
        ctx.put(&self.0, &account, &balance)?;
        // The store write, the event and the input position commit together.
        let event = command.event("deposited", json!({"amount": amount, "balance": balance}));
        ctx.forward(account, event)
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path())?);
    let config = GatewayConfig {
        partitions: 1,
        ..GatewayConfig::default()
    };
    kappa_gateway::ensure_topics(&*log, &config)?; // the processor reads `commands`
    let b = StreamsBuilder::new();
    let store = b.add_state_store(Materialized::persistent(BALANCES), Utf8, I64);
    b.stream(&config.commands_topic, Utf8, Json::<Envelope>::new())
        .process(move || Accounts(store.clone()), &[BALANCES])
        .to(&config.event_topics[0], Utf8, Json::<Envelope>::new());
    let streams = Streams::start(log.clone(), b.build()?, StreamsConfig::new("accounts"))?;
    let streams = Arc::new(streams);
    let schema = json!({
        "type": "object", "required": ["amount"], "additionalProperties": false,
        "properties": {"amount": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}
    });
    let gateway = Gateway::builder(log, config)
        .action("deposit", "Adds an amount to an account", schema)?
        .view(View::new(BALANCES, &streams, BALANCES).values(ValueFormat::I64))
        .start()?;
    ensure!(
        gateway.wait_ready(WAIT)?,
        "the gateway was not ready in {WAIT:?}"
    );
    // The gateway stops with its server; the topology when `streams` drops (a last commit).
    tokio::runtime::Runtime::new()?.block_on(serve_and_talk(Arc::new(gateway)))
}

/// Serves the gateway on a loopback port while a client talks to it.
async fn serve_and_talk(gateway: Arc<Gateway>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving at http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, None, async move {
        let _ = stopped.await;
    }));
    let talked = tokio::time::timeout(WAIT, talk(addr)).await;
    let _ = stop.send(());
    let served = tokio::time::timeout(WAIT, server).await;
    served.context("the server did not stop in time")???;
    talked.context("the service did not answer in time")?
}

/// What a client does: four commands, then a read of the view.
async fn talk(addr: SocketAddr) -> anyhow::Result<()> {
    let mut client = HttpClient::connect(addr).await?;
    let mut written_at = String::new();
    for body in [
        json!({"action": "deposit", "key": "acct-1", "data": {"amount": 25}}),
        json!({"action": "deposit", "key": "acct-1", "data": {"amount": 17}}),
        json!({"action": "deposit", "key": "acct-1", "data": {"amount": -5}}),
        json!({"action": "deposit", "data": {"amount": 10}}),
    ] {
        let to = body["key"].as_str().unwrap_or("no account");
        let what = format!("deposit {} to {to}", body["data"]["amount"]);
        let reply = client.post("/commands?sync=true", &body).await?;
        let answer = reply.json();
        let (event, action) = (&answer["events"][0], text(&answer["events"][0]["action"]));
        if let Some(position) = answer["position"].as_str() {
            written_at = position.to_owned(); // 201 and 409: the command was written
        }
        match reply.status.as_u16() {
            201 => {
                let (balance, parent) =
                    (&event["data"]["balance"], event["parent"] == answer["id"]);
                println!("{what}: 201 {action}, balance {balance}, parent = command: {parent}");
            }
            409 => println!("{what}: 409 {action}: {}", text(&event["data"]["reason"])),
            422 => println!("{what}: 422 {}", text(&answer["detail"])),
            other => bail!("{what}: unexpected {other}: {}", text(&answer)),
        }
    }
    // Read-your-writes: the view answers once it has processed the last command.
    let path = format!("/views/{BALANCES}/acct-1?min_position={written_at}&wait_ms=5000");
    let reply = client.get(&path).await?;
    let view = reply.json();
    ensure!(reply.status.as_u16() == 200, "GET {path}: {}", text(&view));
    println!(
        "view {BALANCES}/acct-1: {} (as of {})",
        view["value"],
        text(&view["position"])
    );
    Ok(())
}

/// A JSON string's text, or the JSON of anything else.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
