//! Process-wide wasmtime `Engine` and compiled-module cache: compiling a filter takes
//! seconds, instantiating it microseconds, so every VM and test shares one `Module`.

use anyhow::Context as _;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use wasmtime::{Config, Engine, Module};

/// Cache of compiled modules, keyed by a hash of the wasm bytes.
pub struct ModuleCache;

type Key = (u64, usize);

fn modules() -> &'static Mutex<HashMap<Key, Module>> {
    static MODULES: OnceLock<Mutex<HashMap<Key, Module>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

impl ModuleCache {
    /// The shared engine: Cranelift with fuel metering always on, so every VM can report
    /// deterministic instruction counts (`Vm::fuel_consumed`). Wasmtime's default charges
    /// `memory.copy` / `memory.fill` one unit per byte besides the instruction; with
    /// `FUEL_FLAT_COPIES` set they cost one unit each, so two runs separate instructions from
    /// bytes moved.
    pub fn engine() -> &'static Engine {
        static ENGINE: OnceLock<Engine> = OnceLock::new();
        ENGINE.get_or_init(|| {
            let mut config = Config::new();
            config.consume_fuel(true);
            if std::env::var_os("FUEL_FLAT_COPIES").is_some() {
                let mut cost = wasmtime::OperatorCost::new();
                cost.variable.memory_copy_per_byte = 0;
                cost.variable.memory_fill_per_byte = 0;
                config.operator_cost(cost);
            }
            Engine::new(&config).expect("wasmtime engine configuration is valid")
        })
    }

    /// Compiles `wasm` once per process; later calls return the cached module.
    pub fn get(wasm: &[u8]) -> anyhow::Result<Module> {
        let mut hasher = DefaultHasher::new();
        wasm.hash(&mut hasher);
        let key = (hasher.finish(), wasm.len());
        // Holding the lock while compiling avoids compiling the same module twice when
        // tests start in parallel; different modules compile one at a time, which on a
        // small machine is no loss.
        let mut modules = modules().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(module) = modules.get(&key) {
            return Ok(module.clone());
        }
        let module = Module::new(Self::engine(), wasm)
            .map_err(|e| anyhow::Error::from(e).context("compiling wasm module"))?;
        modules.insert(key, module.clone());
        Ok(module)
    }

    /// Reads and compiles a `.wasm` file (cached by content, so rebuilds are picked up).
    pub fn get_file(path: impl AsRef<Path>) -> anyhow::Result<Module> {
        let path = path.as_ref();
        let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::get(&wasm)
    }

    /// Number of distinct modules compiled so far.
    pub fn len() -> usize {
        modules().lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
