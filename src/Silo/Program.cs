// The Duck silo: one Orleans silo with the training and chat grains, health endpoints and the chat API. Configuration
// keys live under "Duck:Silo" (SiloHosting.cs) and "Duck:Chat" (ChatApi/ChatApiOptions.cs): appsettings.json, DUCK_
// environment variables, --Duck:Silo:Key=value.
using Duck.Core.Runtime;
using Duck.Silo;
using Duck.Silo.ChatApi;

// Re-executes once with huge-page malloc for libtorch's big tensors; same pid and stdio, so `duck cluster up` is unaffected.
MallocTuning.EnsureHugePageMalloc();

var builder = WebApplication.CreateBuilder(args);
builder.AddDuckSilo();
builder.AddDuckChat();
var app = builder.Build();
app.MapDuckHealth();
app.MapDuckChatApi();
app.Run();
