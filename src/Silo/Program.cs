// The Duck silo: one Orleans silo with the grains of its role, the chat API, health, metrics, the Orleans Dashboard
// and the training page. Configuration keys live under "Duck:Silo", "Duck:Dashboard" and "Duck:Chat"
// (appsettings.json, environment variables such as Duck__Silo__HttpPort, --Duck:Silo:Key=value); see
// SiloHosting.cs, Operations/ and ChatApi/ChatApiOptions.cs.
using Duck.Core.Runtime;
using Duck.Silo;
using Duck.Silo.ChatApi;

// Re-executes once with huge-page malloc for libtorch's big tensors; same pid and stdio, so `duck cluster up` is unaffected.
MallocTuning.EnsureHugePageMalloc();

try
{
    var builder = WebApplication.CreateBuilder(args);
    builder.AddDuckSilo();
    builder.AddDuckOperations();
    builder.AddDuckChat();
    var app = builder.Build();
    app.MapDuckHealth();
    app.MapDuckOperations();
    app.MapDuckChatApi();
    await app.RunAsync();
    return 0;
}
catch (Exception e)
{
    return SiloStartup.Report(e);
}
