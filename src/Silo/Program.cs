// The Duck silo: one Orleans silo with the training grains and health endpoints. Configuration keys live under
// "Duck:Silo" (appsettings.json, DUCK_ environment variables, --Duck:Silo:Key=value); see SiloHosting.cs.
using Duck.Core.Runtime;
using Duck.Silo;

// Re-executes once with huge-page malloc for libtorch's big tensors; same pid and stdio, so `duck cluster up` is unaffected.
MallocTuning.EnsureHugePageMalloc();

var builder = WebApplication.CreateBuilder(args);
builder.AddDuckSilo();
var app = builder.Build();
app.MapDuckHealth();
app.Run();
