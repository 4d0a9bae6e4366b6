// `duck`: the command-line tool for preparing data, training, evaluating, exporting and chatting with Duck models.
using System.CommandLine;
using Duck.Coordinator;
using Duck.Core.Runtime;

MallocTuning.EnsureHugePageMalloc();

var root = new RootCommand("Duck: train and serve BitNet b1.58 (ternary) language models on ordinary CPUs.");
DataCommands.Register(root);
TrainingCommands.Register(root);
FinetuneCommands.Register(root);
InferenceCommands.Register(root);
ClusterCommands.Register(root);
return await Cli.RunAsync(root, args);
