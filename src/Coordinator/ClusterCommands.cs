// `duck cluster up|train|status|pause|cancel|resume`: a local cluster of silo processes, and jobs on a cluster reached
// through one gateway. Training progress comes from polling the job grain (which also re-arms it after a silo
// failure); --json prints one line per step and a final summary. Not the grains: see src/Grains.
using System.CommandLine;
using System.Diagnostics;
using Duck.Core.Runtime;
using Duck.Grains;
using Orleans.Runtime;

namespace Duck.Coordinator;

public static class ClusterCommands
{
    const string DefaultGateway = "127.0.0.1:30000";

    public static void Register(RootCommand root)
    {
        var cluster = new Command("cluster", "Train on an Orleans cluster of silos");
        cluster.Subcommands.Add(UpCommand());
        cluster.Subcommands.Add(TrainCommand());
        cluster.Subcommands.Add(FinetuneCommand());
        cluster.Subcommands.Add(StatusCommand());
        cluster.Subcommands.Add(JobCommand("cancel", "Stop a job after checkpointing it", (job, _) => job.CancelAsync()));
        cluster.Subcommands.Add(JobCommand("pause", "Stop ordering steps (the step in flight commits); resume continues from there", (job, _) => job.PauseAsync()));
        cluster.Subcommands.Add(JobCommand("resume", "Continue a paused job, or a cancelled or failed one from its newest checkpoint", (job, _) => job.ResumeAsync()));
        cluster.Subcommands.Add(ClusterChatCommands.Deploy());
        root.Subcommands.Add(cluster);
    }

    static Option<string?> RunFolderOption() =>
        new("--out") { Description = "Run folder (visible to every silo): checkpoints in OUT/checkpoints, metrics.jsonl and loss.svg as duck train writes them (default: checkpoints in runs/cluster/JOB/checkpoints)" };

    /// <summary>Where a job's checkpoints go: the run folder's checkpoints/ or runs/cluster/JOB/checkpoints, as an absolute path.</summary>
    static string CheckpointFolder(string? runFolder, string jobId)
    {
        if (runFolder is not null) RunFolder.EnsureWritable(runFolder);
        return Path.GetFullPath(Path.Combine(runFolder ?? Path.Combine("runs", "cluster", jobId), TrainingRun.CheckpointFolder));
    }

    static Option<string> Gateway() => new("--gateway") { Description = "A silo's client gateway, HOST:PORT", DefaultValueFactory = _ => DefaultGateway };

    static Command UpCommand()
    {
        var silos = new Option<int>("--silos") { Description = "Silo processes to start", DefaultValueFactory = _ => 2 };
        var siloPort = new Option<int>("--silo-port") { Description = "First silo port (then +1 per silo)", DefaultValueFactory = _ => 11111 };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "First gateway port", DefaultValueFactory = _ => 30000 };
        var httpPort = new Option<int>("--http-port") { Description = "First HTTP (health) port", DefaultValueFactory = _ => 8080 };
        var state = new Option<string>("--state") { Description = "Grain state folder", DefaultValueFactory = _ => Path.Combine("runs", "cluster", "state") };
        var json = new Option<bool>("--json") { Description = "One JSON line per ready silo" };
        var models = new Option<string>("--models") { Description = "Chat models location (duck cluster deploy puts models there)", DefaultValueFactory = _ => ClusterChatCommands.DefaultModels };
        var cores = new Option<string>("--cores")
        {
            Description = "shared: every silo's libtorch may use every core; split: each silo is pinned to its own equal share of the cores, as on separate machines (when there are at least as many cores as silos)",
            DefaultValueFactory = _ => "shared",
        };
        cores.AcceptOnlyFromAmong("split", "shared");
        var torchThreads = new Option<int>("--torch-threads")
        {
            Description = "libtorch threads per silo (0: the silo's cores: its share with --cores split, all with shared); the chat engine gets cores / silos",
            DefaultValueFactory = _ => 0,
        };
        var cmd = new Command("up", "Start a local cluster of silo processes on loopback and keep it running until Ctrl+C") { silos, siloPort, gatewayPort, httpPort, state, json, models, cores, torchThreads };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            int n = pr.GetValue(silos);
            if (n is < 1 or > 32) throw new UserErrorException($"--silos must be in 1..32, got {n}");
            string dll = ClusterConnection.FindSiloDll();
            // Shared (default): every silo's libtorch uses every core, with OpenMP threads that sleep when they wait. Split:
            // silo k is pinned to its own share of the cores. On 2 cores and `mini` both gave the same median step; split
            // had the larger outliers in one run of two (docs/benchmarks.md, "Evening of 2026-11-26").
            int machineCores = Environment.ProcessorCount;
            bool split = pr.GetValue(cores) == "split" && n > 1 && n <= machineCores && CpuAffinity.Supported;
            int[] CoresOf(int silo) => split ? CpuAffinity.Share(silo, n, machineCores) : [];
            int threads = pr.GetValue(torchThreads) is > 0 and var t ? t : split ? machineCores / n : machineCores;
            int chatThreads = Math.Max(1, machineCores / n);
            var processes = new List<Process>();
            try
            {
                for (int i = 0; i < n; i++)
                {
                    var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
                    // Silos that share the machine's cores: libtorch's OpenMP threads sleep when they wait instead of
                    // spinning on cores another silo's workers need (steady `mini` steps 3.5 s instead of 3.5-7.7 s).
                    if (n > 1 && !split && Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null) start.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
                    start.ArgumentList.Add(dll);
                    foreach (var (key, value) in new[] { ("SiloPort", pr.GetValue(siloPort) + i), ("GatewayPort", pr.GetValue(gatewayPort) + i),
                                 ("HttpPort", pr.GetValue(httpPort) + i), ("PrimarySiloPort", pr.GetValue(siloPort)), ("TorchThreads", threads) })
                        start.ArgumentList.Add($"--Duck:Silo:{key}={value}");
                    start.ArgumentList.Add($"--Duck:Silo:StateStore={Path.GetFullPath(pr.GetValue(state)!)}");
                    string modelsLocation = pr.GetValue(models)!;
                    start.ArgumentList.Add($"--Duck:Chat:Models={(modelsLocation.StartsWith("azure:", StringComparison.OrdinalIgnoreCase) ? modelsLocation : Path.GetFullPath(modelsLocation))}");
                    start.ArgumentList.Add($"--Duck:Chat:Threads={chatThreads}");
                    int[] siloCores = CoresOf(i);
                    var process = CpuAffinity.StartOn(start, siloCores);
                    process.OutputDataReceived += (_, _) => { };
                    process.ErrorDataReceived += (_, e) => { if (e.Data is not null && pr.GetValue(json) == false) Console.Error.WriteLine($"silo {process.Id}: {e.Data}"); };
                    process.BeginOutputReadLine();
                    process.BeginErrorReadLine();
                    processes.Add(process);
                    await WaitReadyAsync(process, pr.GetValue(httpPort) + i, ct);
                    var line = new { silo = i, pid = process.Id, gateway = $"127.0.0.1:{pr.GetValue(gatewayPort) + i}", http = $"http://127.0.0.1:{pr.GetValue(httpPort) + i}",
                                     torch_threads = threads, cores = split ? siloCores : null };
                    if (pr.GetValue(json)) Cli.WriteJson(line);
                    else Console.WriteLine($"silo {i} ready (pid {line.pid}): gateway {line.gateway}, http {line.http}{(split ? $", cores {string.Join(",", siloCores)}" : "")}");
                }
                if (!pr.GetValue(json)) Console.WriteLine("cluster up; Ctrl+C stops it");
                // A silo that dies (or is killed) is reported; the others keep serving, as a real cluster would.
                var alive = processes.ToList();
                while (alive.Count > 0)
                {
                    var exited = await Task.WhenAny(alive.Select(p => p.WaitForExitAsync(ct).ContinueWith(_ => p, ct)));
                    var gone = await exited;
                    ct.ThrowIfCancellationRequested();
                    alive.Remove(gone);
                    if (pr.GetValue(json)) Cli.WriteJson(new { @event = "silo_exited", pid = gone.Id, exit_code = gone.ExitCode });
                    else Console.Error.WriteLine($"silo pid {gone.Id} exited with code {gone.ExitCode}; {alive.Count} silo(s) left");
                }
                return 1;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested) { return 0; }
            finally
            {
                foreach (var p in processes.Where(p => !p.HasExited)) p.Kill(entireProcessTree: true);
            }
        });
        return cmd;
    }

    static async Task WaitReadyAsync(Process process, int httpPort, CancellationToken ct)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new UserErrorException($"silo process exited with code {process.ExitCode} before it was ready (port {httpPort} in use?)");
            try
            {
                if ((await http.GetAsync($"http://127.0.0.1:{httpPort}/health/ready", ct)).IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested) { }
            await Task.Delay(300, ct);
        }
        throw new UserErrorException($"silo on http port {httpPort} was not ready within 90 s");
    }

    static GradientCompression ParseCompression(string value)
    {
        try { return GradientCompressionExtensions.Parse(value); }
        catch (ArgumentException e) { throw new UserErrorException(e.Message); }
    }

    static Command TrainCommand()
    {
        var preset = new Option<string>("--preset") { Description = "Model preset", DefaultValueFactory = _ => "mini" };
        var workers = new Option<int>("--workers") { Description = "Worker grains", DefaultValueFactory = _ => 2 };
        var gateway = Gateway();
        var storage = new Option<string>("--storage") { Description = "Checkpoints in a folder (runs/cluster/JOB) or Azure Blob (needs DUCK_STORAGE_CONNECTION_STRING on the silos)", DefaultValueFactory = _ => "folder" };
        var compress = new Option<string>("--compress") { Description = "Gradient encoding: ternary (deterministic, error feedback), terngrad (stochastic TernGrad, error feedback), none or fp16", DefaultValueFactory = _ => "ternary" };
        var syncEvery = new Option<int>("--sync-every") { Description = "Local AdamW steps per worker between synchronizations: 1 is synchronous; H > 1 is DiLoCo (weight deltas, outer Nesterov step with lr 0.7, momentum 0.9)", DefaultValueFactory = _ => 1 };
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps (default: the preset's)" };
        var batch = new Option<int?>("--batch-size") { Description = "Sequences per micro-batch" };
        var seq = new Option<int?>("--seq-len") { Description = "Tokens per sequence" };
        var micro = new Option<int>("--micro-batches") { Description = "Micro-batches per worker per step", DefaultValueFactory = _ => 1 };
        var data = new Option<string>("--data") { Description = "Prepared data folder (visible to every silo)", DefaultValueFactory = _ => Path.Combine("data", "brown") };
        var job = new Option<string?>("--job") { Description = "Job id (default: PRESET-TIMESTAMP); submitting an existing job's spec again continues it" };
        var output = RunFolderOption();
        var shared = new Option<bool>("--shared-data") { Description = "All workers read shard 0 (the single-process trainer's batches)" };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Checkpoint every N steps", DefaultValueFactory = _ => 50 };
        var clipSigmas = new Option<double>("--clip-sigmas") { Description = "terngrad: clip each gradient row at this many standard deviations (0: off)", DefaultValueFactory = _ => 2.5 };
        var json = new Option<bool>("--json") { Description = "One JSON line per step and a final line" };
        var cmd = new Command("train", "Submit a training job to the cluster and follow it")
            { preset, workers, gateway, storage, compress, clipSigmas, syncEvery, steps, batch, seq, micro, data, job, output, shared, checkpointEvery, json };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            string p = pr.GetValue(preset)!;
            var defaults = Duck.Model.TrainingOptions.ForPreset(p);
            Duck.Core.Model.ModelPresets.Get(p);
            string id = pr.GetValue(job) ?? $"{p}-{DateTime.UtcNow:yyyyMMdd-HHmmss}";
            var compression = ParseCompression(pr.GetValue(compress)!);
            string? runFolder = pr.GetValue(output);
            string store = pr.GetValue(storage) switch
            {
                "folder" => CheckpointFolder(runFolder, id),
                "azure" => $"azure:duck-{new string(id.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit).Take(40).ToArray())}",
                var other => throw new UserErrorException($"--storage must be folder or azure, got '{other}'"),
            };
            var spec = new JobSpec
            {
                Preset = p, DataFolder = Path.GetFullPath(pr.GetValue(data)!), Workers = pr.GetValue(workers), Steps = pr.GetValue(steps) ?? defaults.Steps,
                BatchSize = pr.GetValue(batch) ?? defaults.BatchSize, SequenceLength = pr.GetValue(seq) ?? defaults.SequenceLength,
                MicroBatchesPerWorker = pr.GetValue(micro), Compression = compression, CheckpointStore = store, SharedData = pr.GetValue(shared),
                CheckpointEvery = pr.GetValue(checkpointEvery), SyncEvery = pr.GetValue(syncEvery), ClipSigmas = pr.GetValue(clipSigmas),
            };
            try { spec.Validate(); } catch (ArgumentException e) { throw new UserErrorException(e.Message); }
            await using var connection = await ClusterConnection.ConnectAsync(pr.GetValue(gateway)!, ct);
            var grain = connection.Client.GetGrain<ITrainingJobGrain>(id);
            if (!pr.GetValue(json)) Console.WriteLine($"job {id}: {spec.Preset}, {spec.Workers} workers, {spec.Steps} steps, {compression} gradients, checkpoints {store}");
            var status = await ClusterJobFollower.SubmitOrResumeAsync(grain, spec, pr.GetValue(json));
            return await ClusterJobFollower.FollowAsync(grain, status, pr.GetValue(json), runFolder, ct);
        });
        return cmd;
    }

    static Command FinetuneCommand()
    {
        var baseCheckpoint = new Option<string>("--base") { Description = "Pretrained checkpoint (folder, run folder or azure:CONTAINER[/PREFIX]) visible to every silo", Required = true };
        var data = new Option<string>("--data") { Description = "Persona conversations (JSONL) visible to every silo", DefaultValueFactory = _ => FinetuneCommands.DefaultPersonaFile };
        var valData = new Option<string?>("--val-data") { Description = "Held-out conversations (default: DATA's .heldout.jsonl sibling when it exists)" };
        var pretrain = new Option<string>("--pretrain-data") { Description = "Prepared data folder for the pretraining mix", DefaultValueFactory = _ => Path.Combine("data", "brown") };
        var mix = new Option<double>("--mix") { Description = "Share of rows that are pretraining text", DefaultValueFactory = _ => 0.15 };
        var workers = new Option<int>("--workers") { Description = "Worker grains", DefaultValueFactory = _ => 2 };
        var gateway = Gateway();
        var compress = new Option<string>("--compress") { Description = "Gradient encoding: ternary (deterministic, error feedback), terngrad (stochastic TernGrad, error feedback), none or fp16", DefaultValueFactory = _ => "ternary" };
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps (default 240)" };
        var batch = new Option<int?>("--batch-size") { Description = "Sequences per worker per step (default: the fine-tune's batch divided among the workers)" };
        var job = new Option<string?>("--job") { Description = "Job id (default: PRESET-duck-TIMESTAMP); submitting an existing job's spec again continues it" };
        var output = RunFolderOption();
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Checkpoint every N steps", DefaultValueFactory = _ => 50 };
        var json = new Option<bool>("--json") { Description = "One JSON line per step and a final line" };
        var cmd = new Command("finetune", "Submit a persona fine-tune (loss on the replies only) to the cluster and follow it")
            { baseCheckpoint, data, valData, pretrain, mix, workers, gateway, compress, steps, batch, job, output, checkpointEvery, json };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            var loaded = await TrainingRun.LoadCheckpointAsync(pr.GetValue(baseCheckpoint)!, ct);
            var model = System.Text.Json.JsonSerializer.Deserialize<Duck.Core.Model.ModelConfig>(loaded.Manifest.Model)!;
            string p = System.Text.Json.JsonSerializer.Deserialize<Duck.Model.TrainingOptions>(loaded.Manifest.Training)?.Preset ?? "";
            if (!Duck.Core.Model.ModelPresets.All.ContainsKey(p) || (Duck.Core.Model.ModelPresets.Get(p) with { VocabSize = model.VocabSize }) != model)
                throw new UserErrorException($"the base checkpoint's model is not a preset the cluster trains ('{p}'); fine-tune it with duck finetune");
            string dataFile = Path.GetFullPath(pr.GetValue(data)!);
            var conversations = FinetuneCommands.LoadPersona(dataFile);
            string? val = pr.GetValue(valData) is { } v ? Path.GetFullPath(v) : FinetuneCommands.HeldOutSibling(dataFile);
            if (val is not null) FinetuneCommands.LoadPersona(val);
            var defaults = Duck.Model.TrainingOptions.ForFinetune(Duck.Model.TrainingOptions.ForPreset(p), model.ContextLength, model.ModelDim);
            int k = pr.GetValue(workers);
            if (k < 1 || k > conversations.Count) throw new UserErrorException($"--workers must be in 1..{conversations.Count} (the conversations), got {k}");
            string id = pr.GetValue(job) ?? $"{p}-duck-{DateTime.UtcNow:yyyyMMdd-HHmmss}";
            var compression = ParseCompression(pr.GetValue(compress)!);
            var spec = new JobSpec
            {
                Preset = p, VocabSize = model.VocabSize, DataFolder = Path.GetFullPath(pr.GetValue(pretrain)!), Workers = k,
                Steps = pr.GetValue(steps) ?? defaults.Steps, BatchSize = pr.GetValue(batch) ?? Math.Max(1, defaults.BatchSize / k),
                SequenceLength = defaults.SequenceLength, Compression = compression, CheckpointEvery = pr.GetValue(checkpointEvery),
                CheckpointStore = CheckpointFolder(pr.GetValue(output), id), EvalBatches = defaults.EvalBatches,
                BaseCheckpoint = FinetuneCommands.ResolvedLocation(pr.GetValue(baseCheckpoint)!, loaded), ChatData = dataFile, ChatValidationData = val ?? "",
                PretrainMix = pr.GetValue(mix),
            };
            try { spec.Validate(); } catch (ArgumentException e) { throw new UserErrorException(e.Message); }
            await using var connection = await ClusterConnection.ConnectAsync(pr.GetValue(gateway)!, ct);
            var grain = connection.Client.GetGrain<ITrainingJobGrain>(id);
            if (!pr.GetValue(json))
                Console.WriteLine($"job {id}: fine-tune of {spec.BaseCheckpoint} on {conversations.Count} conversations, {k} workers, {spec.Steps} steps, " +
                                  $"{compression} gradients, checkpoints {spec.CheckpointStore}");
            var status = await ClusterJobFollower.SubmitOrResumeAsync(grain, spec, pr.GetValue(json));
            return await ClusterJobFollower.FollowAsync(grain, status, pr.GetValue(json), pr.GetValue(output), ct);
        });
        return cmd;
    }

    static Command StatusCommand()
    {
        var job = new Argument<string?>("job") { Description = "Job id (omit to list the silos)", Arity = ArgumentArity.ZeroOrOne };
        var gateway = Gateway();
        var json = new Option<bool>("--json") { Description = "One JSON object" };
        var cmd = new Command("status", "A job's state and progress, or the cluster's silos") { job, gateway, json };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            await using var connection = await ClusterConnection.ConnectAsync(pr.GetValue(gateway)!, ct);
            if (pr.GetValue(job) is not { } id)
            {
                var hosts = await connection.Client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
                foreach (var (silo, st) in hosts)
                    if (pr.GetValue(json)) Cli.WriteJson(new { silo = silo.ToString(), status = st.ToString() });
                    else Console.WriteLine($"{silo} {st}");
                return 0;
            }
            JobStatus s;
            try { s = await connection.Client.GetGrain<ITrainingJobGrain>(id).GetStatusAsync(); }
            catch (KeyNotFoundException e) { throw new UserErrorException(e.Message); }
            Print(s, pr.GetValue(json));
            return 0;
        });
        return cmd;
    }

    static Command JobCommand(string name, string description, Func<ITrainingJobGrain, CancellationToken, Task<JobStatus>> act)
    {
        var job = new Argument<string>("job") { Description = "Job id" };
        var gateway = Gateway();
        var json = new Option<bool>("--json") { Description = "One JSON object" };
        var cmd = new Command(name, description) { job, gateway, json };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            await using var connection = await ClusterConnection.ConnectAsync(pr.GetValue(gateway)!, ct);
            try { Print(await act(connection.Client.GetGrain<ITrainingJobGrain>(pr.GetValue(job)!), ct), pr.GetValue(json)); }
            catch (KeyNotFoundException e) { throw new UserErrorException(e.Message); }
            return 0;
        });
        return cmd;
    }

    static void Print(JobStatus s, bool json)
    {
        if (json)
            Cli.WriteJson(new { job = s.JobId, state = s.State.ToString().ToLowerInvariant(), step = s.Step, steps = s.Steps, loss = s.Last?.Loss, val_loss = s.ValLoss,
                                checkpoint_step = s.CheckpointStep, recoveries = s.Recoveries, compression_ratio = s.CompressionRatio, reason = s.Reason });
        else
            Console.WriteLine($"job {s.JobId}: {s.State}, step {s.Step}/{s.Steps}, loss {s.Last?.Loss:F3}, checkpoint step {s.CheckpointStep}, " +
                              $"recoveries {s.Recoveries}{(s.ValLoss is { } v ? $", validation loss {v:F3}" : "")}{(s.Reason is null ? "" : $"; {s.Reason}")}");
    }
}
