//! `qwen-rs`: generate text with a Qwen2/Qwen2.5 model from the command line.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use qwen_rs::chat::{self, Message};
use qwen_rs::cpu::CpuEngine;
use qwen_rs::cuda::CudaEngine;
use qwen_rs::engine::Engine;
use qwen_rs::generate::generate;
use qwen_rs::sampling::{Sampler, SamplingParams};
use qwen_rs::{cuda, fetch};

#[derive(Parser)]
#[command(name = "qwen-rs", version, about = "Qwen2.5 text generation; every GPU kernel written in Rust")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Download, verify and cache the default model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF).
    Fetch,
    /// Write the embedded PTX (one file per architecture) into DIR, e.g. to check it with ptxas.
    Ptx { dir: PathBuf },
    /// Measure the CUDA engine (JSON on stdout, a table on stderr).
    Bench {
        /// Random weights of this Qwen2.5 shape: 0.5b, 1.5b, 3b or 7b.
        #[arg(long, default_value = "0.5b")]
        shape: String,
        /// A real model instead (.gguf or Hugging Face directory).
        #[arg(long, short)]
        model: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeviceChoice {
    /// CUDA if a device is present, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The prompt; read from standard input when absent.
    prompt: Option<String>,
    /// A .gguf file or a Hugging Face model directory (default: the cached Qwen2.5-Coder-0.5B-Instruct, fetched on first use).
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// System prompt for the chat template.
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as it is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Stop after this many generated tokens.
    #[arg(long, short = 'n', default_value_t = 512)]
    max_tokens: usize,
    /// Context length to allocate (capped at the model's own).
    #[arg(long, short = 'c', default_value_t = 4096)]
    ctx_size: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep only the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling mass, in (0, 1].
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Penalty for recently seen tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Seed for sampling (default: random). The same seed gives the same text.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Keep generating past the end-of-turn token (for benchmarks and checks), up to --max-tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print where the load time goes (model and tokenizer, CUDA start-up, upload) to stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// CUDA start-up running on its own thread. Dropping it (an error before the engine is built)
/// waits for the thread: exiting while the driver is being initialised let that thread panic.
struct CudaStartup(Option<std::thread::JoinHandle<qwen_rs::Result<cuda::Gpu>>>);

impl CudaStartup {
    /// The opened GPU, `None` where CUDA was not started (`--device cpu`).
    fn join(mut self) -> Option<qwen_rs::Result<cuda::Gpu>> {
        let t = self.0.take()?;
        Some(t.join().unwrap_or_else(|_| Err(qwen_rs::Error::Cuda("CUDA start-up panicked".into()))))
    }
}

impl Drop for CudaStartup {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Fetch) => fetch::fetch().map(|_| ()),
        Some(Command::Ptx { dir }) => write_ptx(&dir),
        Some(Command::Bench { shape, model }) => {
            qwen_rs::bench::run(&shape, model.as_deref()).map_err(anyhow::Error::from).and_then(|report| {
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            })
        }
        None => run(cli.run),
    };
    if let Err(e) = result {
        eprintln!("qwen-rs: error: {e:#}");
        std::process::exit(1);
    }
}

/// A seed from the clock when none is given (avoids blocking on the kernel's entropy pool).
fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn write_ptx(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (arch, _, _, ptx) in cuda::KERNELS_PTX {
        let p = dir.join(format!("kernels_{arch}.ptx"));
        std::fs::write(&p, ptx).with_context(|| format!("cannot write {}", p.display()))?;
        println!("{}", p.display());
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed.unwrap_or_else(clock_seed),
        ..Default::default()
    };
    params.validate()?;
    if args.ctx_size < 2 {
        bail!("--ctx-size {} is too small (at least 2)", args.ctx_size);
    }

    let prompt = match args.prompt {
        Some(p) => p,
        None => {
            if std::io::stdin().is_terminal() {
                bail!("no prompt: pass it as an argument (qwen-rs \"Write a haiku\") or on standard input");
            }
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).context("cannot read the prompt from standard input")?;
            let text = String::from_utf8(bytes).context("the prompt on standard input is not valid UTF-8")?;
            // `echo "…" | qwen-rs` ends the prompt with a newline nobody meant to send.
            text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string()
        }
    };
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }

    let model_path = match args.model {
        Some(p) => p,
        None => fetch::ensure_default_model()?,
    };
    let t_load = Instant::now();
    // Three things overlap: CUDA start-up (driver, context, the kernels' PTX compiled for this
    // GPU) on one thread, the tokenizer on another (qwen_rs::load_with), and reading and
    // converting the weights on the rest, then building the engine (the upload) from them.
    let gpu = CudaStartup((args.device != DeviceChoice::Cpu).then(|| std::thread::spawn(cuda::Gpu::open)));
    let (mut read_s, mut wait_s, mut engine_s) = (0.0, 0.0, 0.0);
    // The host copy of the weights once they are on the device: kept until the answer is done.
    // Freeing gigabytes takes 0.1-0.2 s; done before the first token it slowed the load by as
    // much, and done on a thread beside the decode loop it stalled decoding by 20-40 ms (H100,
    // BENCHMARKS.md step 19).
    let mut host_copy = None;
    let (config, mut engine, mut tokenizer) =
        qwen_rs::load_with(&model_path, |cfg, weights| -> anyhow::Result<Box<dyn Engine>> {
            read_s = t_load.elapsed().as_secs_f64();
            let ctx = args.ctx_size.min(cfg.max_position_embeddings);
            let t_wait = Instant::now();
            let opened = gpu.join().map(|opened| opened.and_then(|g| g.make_current().map(|()| g)));
            // The GPU to run on, or None for the CPU engine.
            let gpu = match (args.device, opened) {
                (DeviceChoice::Cpu, _) | (_, None) => None,
                (DeviceChoice::Cuda, Some(gpu)) => Some(gpu.context("--device cuda: no usable CUDA device")?),
                (DeviceChoice::Auto, Some(Ok(gpu))) => Some(gpu),
                (DeviceChoice::Auto, Some(Err(e))) => {
                    eprintln!("qwen-rs: no CUDA device ({e}); using the CPU engine");
                    None
                }
            };
            let (cfg, t_engine) = (cfg.clone(), Instant::now());
            wait_s = t_wait.elapsed().as_secs_f64();
            let engine: Box<dyn Engine> = match gpu {
                Some(gpu) => {
                    let engine = CudaEngine::new(gpu, cfg, &weights, ctx)?;
                    host_copy = Some(weights);
                    Box::new(engine)
                }
                None => Box::new(CpuEngine::new(cfg, weights, ctx)),
            };
            engine_s = t_engine.elapsed().as_secs_f64();
            Ok(engine)
        })?; // its errors name the file
    let load_s = t_load.elapsed().as_secs_f64();
    if args.verbose {
        eprintln!(
            "qwen-rs: load {load_s:.2} s: weights read {read_s:.2} s, then {wait_s:.2} s waiting for CUDA start-up \
             (it runs meanwhile), {engine_s:.2} s building the engine (for CUDA: weights to the device); the \
             tokenizer is built beside all of this"
        );
    }
    let ctx = engine.max_seq();

    let text = if args.raw {
        prompt
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(Message::new("system", s));
        }
        messages.push(Message::new("user", &prompt));
        chat::render(tokenizer.chat_template.as_deref(), &messages)?
    };
    let ids = tokenizer.encode(&text)?;
    if ids.len() >= ctx {
        bail!(
            "the prompt is {} tokens, which leaves no room in the context of {ctx} tokens (raise --ctx-size, up to {})",
            ids.len(),
            config.max_position_embeddings
        );
    }

    let room = ctx - ids.len();
    if args.max_tokens > room {
        eprintln!(
            "qwen-rs: note: --max-tokens {} is more than the {room} tokens left in the context of {ctx}; \
             generation stops at the end of the context (raise --ctx-size, up to {})",
            args.max_tokens, config.max_position_embeddings
        );
    }

    // Ctrl-C: the first stops generation after the current token (stats are still printed);
    // a second one exits at once.
    ctrlc::set_handler(|| {
        if qwen_rs::generate::STOP_REQUESTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    let mut sampler = Sampler::new(params)?;
    if args.ignore_eos {
        tokenizer.eos_ids.clear();
    }
    let mut stdout = std::io::stdout().lock();
    let (_, stats) = generate(engine.as_mut(), &tokenizer, &ids, args.max_tokens, &mut sampler, |piece| {
        stdout
            .write_all(piece.as_bytes())
            .and_then(|_| stdout.flush())
            .map_err(|e| qwen_rs::Error::Usage(format!("writing to stdout: {e}")))
    })?;
    writeln!(stdout).ok();
    if stats.interrupted {
        eprintln!("qwen-rs: interrupted");
    }
    eprintln!(
        "qwen-rs: {} | load {load_s:.2} s | prompt {} tokens, {:.1} tok/s | generated {} tokens, {:.1} tok/s",
        engine.name(),
        stats.prompt_tokens,
        stats.prefill_tok_s(),
        stats.generated_tokens,
        stats.decode_tok_s()
    );
    drop(host_copy);
    if stats.interrupted {
        std::process::exit(130);
    }
    Ok(())
}
